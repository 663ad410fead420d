import type { ApiError, Tenant } from "@nexus/contracts";
import type { AskRow, Logger } from "@nexus/platform";
import type { z } from "zod";
import type { ShareConnector } from "../connector/types.ts";

/** What an action module gets besides its params. Scoped to one execution of one ask. */
export interface ActionContext {
  tenant: Tenant;
  ask: AskRow;
  /** Child logger bound to tenant, ask, command and correlation ids. */
  logger: Logger;
  /** Aborted when the worker shuts down. */
  signal: AbortSignal;
  connector: ShareConnector;
  /** The clock; tests pass a fixed one. */
  now: () => Date;
  /** Publishes an optional `command.progress` report about the held command (idempotent per step). */
  progress(step: string, percent?: number): Promise<void>;
}

/**
 * A failure an action reports on purpose. `retryable: false` fails the ask at once with
 * `error` (`ask.execution_failed`); `retryable: true` redelivers the decision with backoff.
 * Never match on its message.
 */
export class ActionError extends Error {
  override name = "ActionError";
  constructor(
    readonly error: ApiError,
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(error.message, options);
  }
}

/** True for {@link ActionError}. */
export function isActionError(err: unknown): err is ActionError {
  return err instanceof ActionError;
}

/**
 * An approved action the worker can run (one module per action type, graphile-worker task
 * style). `execute` must be idempotent per ask: it runs again after a crash or redelivery.
 */
export interface ActionModule<P = unknown, R = unknown> {
  /** The command type of the held action, e.g. `external_share.prepare`. */
  type: string;
  /** Params schema (the contracts registry entry for `type`). */
  params: z.ZodType<P>;
  /**
   * Runs the action.
   * @returns the result stored on the ask and carried by `ask.executed`.
   * @throws {ActionError} or `ConnectorError`: `retryable: false` fails the ask; anything else
   *   is transient (redelivered with backoff, at most `MAX_RETRIES` deliveries).
   */
  execute(params: P, ctx: ActionContext): Promise<R>;
}

import type { CommandType, ErrorCode, RiskLevel, Tenant } from "@nexus/contracts";
import type { Logger } from "pino";
import type { z } from "zod";

/**
 * What a handler gets besides its params. Everything is scoped to one command delivery.
 */
export interface HandlerContext {
  /** Child logger bound to tenant, command_id and correlation_id. */
  logger: Logger;
  /** Aborted when the worker shuts down or the delivery is abandoned. */
  signal: AbortSignal;
  tenant: Tenant;
  commandId: string;
  correlationId: string;
  /** The clock; tests pass a fixed one. */
  now: () => Date;
  /** Language-model provider used by drafting handlers. */
  llm: LlmProvider;
  /** Publishes an optional `command.progress` report (idempotent per step name). */
  progress(step: string, percent?: number): Promise<void>;
}

/** Input of {@link LlmProvider.draftEmail}. */
export interface DraftEmailRequest {
  to?: string;
  subject?: string;
  brief: string;
  tone: "neutral" | "friendly" | "formal" | "firm" | "apologetic";
  language: string;
  /** Sender display name from the tenant profile / persona, when known. */
  senderName?: string;
}

/**
 * A language-model provider. The default is the offline drafting provider; real providers
 * (HTTP APIs) implement the same interface later.
 */
export interface LlmProvider {
  /** Stable provider name for logs and results, e.g. `"offline-template"`. */
  readonly name: string;
  /**
   * Drafts an email.
   * @throws {HandlerError} with `retryable: true` for transient provider failures.
   */
  draftEmail(req: DraftEmailRequest, signal: AbortSignal): Promise<{ subject: string; body: string }>;
}

/**
 * A command handler module: one per command type (graphile-worker task style).
 * `params` is the same schema as the contracts registry entry for `type`.
 */
export interface CommandHandler<P = unknown, R = unknown> {
  type: CommandType;
  params: z.ZodType<P>;
  risk: RiskLevel;
  handle(params: P, ctx: HandlerContext): Promise<R>;
}

/**
 * A failure a handler reports on purpose. `retryable: false` fails the command at once
 * (`command.failed`, no retries); `retryable: true` lets the worker retry with backoff.
 */
export class HandlerError extends Error {
  override name = "HandlerError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True for {@link HandlerError}s (never match on message text). */
export function isHandlerError(err: unknown): err is HandlerError {
  return err instanceof HandlerError;
}

/**
 * The command handler interface (graphile-worker task style): one module per command type,
 * exporting `{ type, handle(params, ctx) }`. A handler is typed from the one command registry
 * in contracts (`COMMAND_TYPES`): its params type is the registry's schema for its type, and
 * its risk is the registry's; it never restates either.
 */
import type { COMMAND_TYPES, CommandType, ErrorCode, Tenant } from "@nexus/contracts";
import type { Logger } from "pino";
import type { z } from "zod";
import type { ShareConnector } from "./connectors/share.ts";

/** The params of a command type, as its registry schema parses them. */
export type ParamsOf<T extends CommandType> = z.output<(typeof COMMAND_TYPES)[T]["params"]>;

/** The approval a held action runs under (approved actions only). */
export interface ApprovalContext {
  askId: string;
  /** Distinct approving principals, in decision order. */
  approvedBy: string[];
}

/** What a handler gets besides its params. Everything is scoped to one attempt of one command. */
export interface HandlerContext {
  /** Child logger bound to tenant, command_id and correlation_id. */
  logger: Logger;
  /** Aborted when the worker shuts down or the attempt is abandoned. */
  signal: AbortSignal;
  tenant: Tenant;
  commandId: string;
  correlationId: string;
  /** The clock; tests pass a fixed one. */
  now: () => Date;
  /** Language-model provider used by drafting handlers. */
  llm: LlmProvider;
  /** Connectors to the outside world (the share outbox). */
  connectors: { share: ShareConnector };
  /** Set when the handler runs an approved ask's action (RED, or raised to RED by the tenant). */
  approval?: ApprovalContext;
  /** Publishes a coarse `command.progress` report (idempotent per stage name). */
  progress(stage: string, percent?: number): Promise<void>;
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
 * (HTTP APIs) implement the same interface.
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

/** A command handler module for type `T` (see module doc). */
export interface CommandHandler<T extends CommandType = CommandType, R = unknown> {
  readonly type: T;
  /**
   * Runs the command.
   * @returns the result carried by `command.completed` (or `ask.executed`).
   * @throws {HandlerError} `retryable: false` fails the command at once with its code;
   *   anything else is transient and retried per the worker's schedule.
   */
  handle(params: ParamsOf<T>, ctx: HandlerContext): Promise<R>;
}

/** Declares a handler for `type`, its params typed from the registry. */
export function defineHandler<T extends CommandType, R>(
  type: T,
  handle: (params: ParamsOf<T>, ctx: HandlerContext) => Promise<R>,
): CommandHandler<T, R> {
  return { type, handle };
}

/**
 * A failure a handler reports on purpose. `retryable: false` fails the command at once
 * (`command.failed`, no retries); `retryable: true` lets the worker retry with backoff.
 */
export class HandlerError extends Error {
  override name = "HandlerError";
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, retryable = false, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.retryable = retryable;
  }
}

/** True for {@link HandlerError}s (never match on message text). */
export function isHandlerError(err: unknown): err is HandlerError {
  return err instanceof HandlerError;
}

/**
 * The command handler interface (graphile-worker task style): one module per command type,
 * exporting `{ type, handle(params, ctx) }`. A handler is typed from the one command registry
 * in contracts (`COMMAND_TYPES`): its params type is the registry's schema for its type, and
 * its risk is the registry's; it never restates either.
 */
import type {
  COMMAND_TYPES,
  CommandProgress,
  CommandType,
  ErrorCode,
  Persona,
  Profile,
  Tenant,
} from "@nexus/contracts";
import type { BudgetWarning } from "@nexus/core";
import type { Logger } from "pino";
import type { z } from "zod";
import type { ShareConnector } from "./connectors/share.ts";
import type { LlmCall, LlmClient } from "./llm/client.ts";

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
  /** The language-model layer (providers, fallback, breaker, budget); see llm/client.ts. */
  llm: LlmClient;
  /** The tenant's profile (display name as the signature, locale as the default language), from `tenant_settings`. */
  profile: Profile;
  /** The tenant's assistant persona (name, tone, instructions), from `tenant_settings`. */
  persona: Persona;
  /** Connectors to the outside world (the share outbox). */
  connectors: { share: ShareConnector };
  /** Set when the handler runs an approved ask's action (RED, or raised to RED by the tenant). */
  approval?: ApprovalContext;
  /**
   * Publishes a coarse `command.progress` report (stored, replayed; idempotent per stage name).
   * For stage changes of long commands only, never per token.
   */
  progress(stage: string, percent?: number): Promise<void>;
  /**
   * Live progress (SSE `event: progress`, not stored): the worker coalesces calls to at most a
   * few messages per second per command and never lets them block or fail the handler.
   */
  live(p: Omit<CommandProgress, "command_id">): void;
  /** Publishes the `risk.warning` of the call that crossed the tenant's soft budget threshold. */
  budgetWarning(w: BudgetWarning): Promise<void>;
}

/** Input of {@link OfflineDraftProvider.draftEmail}. */
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
 * The {@link LlmCall} of a handler's model call: its tenant and ids, streamed text as live
 * progress of `stage` (a restarted generation becomes `<stage>#<n>`), and budget warnings.
 */
export function llmCallOf(ctx: HandlerContext, stage: string): LlmCall {
  return {
    tenant: ctx.tenant,
    commandId: ctx.commandId,
    correlationId: ctx.correlationId,
    signal: ctx.signal,
    onDelta: (text, generation) =>
      ctx.live({ stage: generation === 1 ? stage : `${stage}#${generation}`, text_delta: text }),
    onBudgetWarning: (w) => ctx.budgetWarning(w),
  };
}

/**
 * Whether a handler should answer with its offline path after `err` from the model chain:
 * only when `offline` ends the chain and no provider could answer (timeouts, rate limits,
 * outages). A budget refusal or a malformed answer is never papered over.
 */
export function answerOffline(ctx: HandlerContext, err: unknown): boolean {
  return (
    ctx.llm.offlineFallback &&
    isHandlerError(err) &&
    (err.code === "LLM_UNAVAILABLE" || err.code === "LLM_TIMEOUT" || err.code === "LLM_RATE_LIMITED")
  );
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

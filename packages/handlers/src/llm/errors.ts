import type { ErrorCode } from "@nexus/contracts";
import { APICallError } from "ai";
import { BrokenCircuitError, TaskCancelledError } from "cockatiel";

/** How one model call attempt ended (audit `outcome`, metric label). */
export type LlmOutcome =
  | "ok"
  | "bad_output"
  | "timeout"
  | "rate_limited"
  | "unavailable"
  | "rejected"
  | "breaker_open"
  | "budget_refused"
  | "aborted";

/**
 * A failed model call attempt, classified. `retryable`: the same provider may answer on a
 * retry (429, 5xx, timeouts, dropped or truncated streams); `rejected` requests (other 4xx: bad
 * key, unknown model) are not retried but the chain still falls back to the next provider.
 */
export class LlmCallError extends Error {
  override name = "LlmCallError";
  readonly code: Extract<ErrorCode, "LLM_TIMEOUT" | "LLM_RATE_LIMITED" | "LLM_UNAVAILABLE" | "LLM_BAD_OUTPUT">;
  readonly outcome: LlmOutcome;
  readonly retryable: boolean;
  /** HTTP status of the provider's answer, when there was one. */
  readonly status: number | undefined;
  /** The provider's `Retry-After` (or `retry-after-ms`), in ms, when it sent one. */
  readonly retryAfterMs: number | undefined;
  constructor(
    code: LlmCallError["code"],
    outcome: LlmOutcome,
    message: string,
    o: { retryable: boolean; status?: number; retryAfterMs?: number; cause?: unknown },
  ) {
    super(message, { cause: o.cause });
    this.code = code;
    this.outcome = outcome;
    this.retryable = o.retryable;
    this.status = o.status;
    this.retryAfterMs = o.retryAfterMs;
  }
}

/** True for {@link LlmCallError}s. */
export function isLlmCallError(err: unknown): err is LlmCallError {
  return err instanceof LlmCallError;
}

/**
 * `Retry-After` in ms from response headers: `retry-after-ms`, or `retry-after` as seconds or an
 * HTTP date; `undefined` when absent or unreadable. Negative values count as 0.
 */
export function retryAfterMs(headers: Record<string, string> | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers["retry-after-ms"];
  if (ms !== undefined && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const value = headers["retry-after"];
  if (value === undefined) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Math.max(0, Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Classifies what a model call threw.
 * @param timedOut whether the attempt's own timeout fired (then it is `LLM_TIMEOUT`).
 */
export function classifyLlmError(err: unknown, timedOut: boolean): LlmCallError {
  if (isLlmCallError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (timedOut || err instanceof TaskCancelledError)
    return new LlmCallError("LLM_TIMEOUT", "timeout", "The model did not answer in time", {
      retryable: true,
      cause: err,
    });
  if (err instanceof BrokenCircuitError)
    return new LlmCallError("LLM_UNAVAILABLE", "breaker_open", "The provider's circuit breaker is open", {
      retryable: false,
      cause: err,
    });
  if (APICallError.isInstance(err)) {
    const status = err.statusCode;
    const after = retryAfterMs(err.responseHeaders);
    if (status === 429)
      return new LlmCallError("LLM_RATE_LIMITED", "rate_limited", `The provider rate-limited the call (429)`, {
        retryable: true,
        status,
        ...(after !== undefined ? { retryAfterMs: after } : {}),
        cause: err,
      });
    // 4xx other than 408/409 is a refusal; anything else (5xx, or a 200 whose stream broke) is transient.
    if (status === undefined || status < 400 || status >= 500 || status === 408 || status === 409)
      return new LlmCallError(
        "LLM_UNAVAILABLE",
        "unavailable",
        `The provider failed (${status ?? "no status"}: ${message})`,
        {
          retryable: true,
          ...(status !== undefined ? { status } : {}),
          ...(after !== undefined ? { retryAfterMs: after } : {}),
          cause: err,
        },
      );
    return new LlmCallError("LLM_UNAVAILABLE", "rejected", `The provider refused the request (${status})`, {
      retryable: false,
      status,
      cause: err,
    });
  }
  // Network errors, dropped connections, truncated or unparseable streams.
  return new LlmCallError("LLM_UNAVAILABLE", "unavailable", `The provider call failed: ${message}`, {
    retryable: true,
    cause: err,
  });
}

import type { ErrorDetail } from "@nexus/contracts";
import { LenientErrorBody, type NexusErrorCode } from "./wire.ts";

/** Constructor fields of {@link NexusApiError}. */
export interface NexusApiErrorInit {
  code: NexusErrorCode;
  message: string;
  /** Whether repeating the same request may succeed (from the server, or the SDK's judgement). */
  recoverable: boolean;
  /** HTTP status of the answer; `0` when there was none (network error, timeout). */
  status: number;
  details?: ErrorDetail[];
  /** The correlation id of the request, from the error body (else the one the SDK sent). */
  correlation_id?: string;
  /** Where the failure happened, when the server says (`auth`, `validate`, `publish`, …). */
  stage?: string;
  /** How many HTTP attempts were made (1 = no retry). */
  attempts?: number;
  /** The server's `Retry-After` in milliseconds, when it sent one. */
  retryAfterMs?: number;
  cause?: unknown;
}

/**
 * A failed API call: the standard error body of docs/contract.md "The standard error body" (`code`,
 * `message`, `recoverable`, `details`, `correlation_id`) plus the HTTP `status`.
 *
 * `code` is one of the contracts' closed catalogue, a code the contract added later (the SDK
 * accepts unknown codes rather than failing), or one of the SDK's own (status 0):
 * `NETWORK_ERROR`, `INVALID_RESPONSE`, `HTTP_ERROR`, `STREAM_TIMEOUT` (see `wire.ts`).
 *
 * Notable codes for writing calls (docs/contract.md "What an answer promises"):
 * - `DEPENDENCY_UNAVAILABLE` (503): nothing was stored; it never takes effect.
 * - `ACCEPT_UNCONFIRMED` (504, or status 0 after a lost answer): it **may** have taken effect.
 *   The SDK already repeated the same request as often as allowed; repeating it again (same
 *   body) learns the outcome (202 or 409). Show "confirming…", not "failed".
 *
 * Match on `code` (or use {@link isNexusApiError}), never on `message`.
 */
export class NexusApiError extends Error {
  override name = "NexusApiError";
  readonly code: NexusErrorCode;
  readonly recoverable: boolean;
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;
  readonly correlation_id: string | undefined;
  readonly stage: string | undefined;
  readonly attempts: number;
  readonly retryAfterMs: number | undefined;

  constructor(init: NexusApiErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.recoverable = init.recoverable;
    this.status = init.status;
    this.details = init.details;
    this.correlation_id = init.correlation_id;
    this.stage = init.stage;
    this.attempts = init.attempts ?? 1;
    this.retryAfterMs = init.retryAfterMs;
  }

  /** The standard error body this error stands for (without `status`). */
  toJSON(): {
    error: { code: string; message: string; recoverable: boolean; details?: ErrorDetail[]; stage?: string };
    correlation_id?: string;
    status: number;
  } {
    return {
      error: {
        code: this.code,
        message: this.message,
        recoverable: this.recoverable,
        ...(this.details ? { details: this.details } : {}),
        ...(this.stage ? { stage: this.stage } : {}),
      },
      ...(this.correlation_id ? { correlation_id: this.correlation_id } : {}),
      status: this.status,
    };
  }
}

/**
 * True when `e` is a {@link NexusApiError}, optionally with one of `codes`.
 * Works across copies of the SDK (checks `name` and `code`, not only `instanceof`).
 */
export function isNexusApiError(e: unknown, ...codes: NexusErrorCode[]): e is NexusApiError {
  const ok =
    e instanceof NexusApiError ||
    (e instanceof Error && e.name === "NexusApiError" && typeof (e as { code?: unknown }).code === "string");
  return ok && (codes.length === 0 || codes.includes((e as NexusApiError).code));
}

/** Error codes an HTTP status stands for when the answer has no standard error body. */
function codeForStatus(status: number): { code: NexusErrorCode; recoverable: boolean } {
  if (status === 429) return { code: "RATE_LIMITED", recoverable: true };
  if (status === 503) return { code: "DEPENDENCY_UNAVAILABLE", recoverable: true };
  // A bare 502/504 comes from a proxy that may have forwarded the request: outcome unknown.
  if (status === 502 || status === 504) return { code: "ACCEPT_UNCONFIRMED", recoverable: true };
  if (status === 401) return { code: "UNAUTHENTICATED", recoverable: false };
  if (status === 404) return { code: "NOT_FOUND", recoverable: false };
  return { code: "HTTP_ERROR", recoverable: status >= 500 };
}

/**
 * Builds a {@link NexusApiError} from a non-2xx answer's status and body text. A body that is
 * not the standard error body (a proxy's HTML page, an empty body) gets a code from the status.
 */
export function errorFromResponse(
  status: number,
  text: string,
  extra: { correlation_id?: string; attempts?: number; retryAfterMs?: number } = {},
): NexusApiError {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {}
  const parsed = LenientErrorBody.safeParse(json);
  if (parsed.success) {
    const e = parsed.data.error;
    return new NexusApiError({
      code: e.code,
      message: e.message,
      recoverable: e.recoverable,
      status,
      details: e.details,
      stage: e.stage,
      correlation_id: parsed.data.correlation_id ?? extra.correlation_id,
      attempts: extra.attempts,
      retryAfterMs: extra.retryAfterMs,
    });
  }
  const { code, recoverable } = codeForStatus(status);
  return new NexusApiError({
    code,
    message: `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`,
    recoverable,
    status,
    correlation_id: extra.correlation_id,
    attempts: extra.attempts,
    retryAfterMs: extra.retryAfterMs,
  });
}

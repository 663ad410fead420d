import { authHeaders, type ClientAuth } from "./auth.ts";
import { fullJitterMs, parseRetryAfterMs, type RandomSource, sleep } from "./backoff.ts";
import { errorFromResponse, NexusApiError } from "./errors.ts";

/**
 * Retry policy of HTTP calls. Defaults are stated beside each field.
 *
 * Delays are full-jitter exponential (AWS "Exponential Backoff And Jitter"):
 * retry *n* waits `random(0, min(maxDelayMs, baseDelayMs * 2^(n-1)))`, but never less than the
 * server's `Retry-After` (RFC 9110 §10.2.3) when it sent one.
 */
export interface RetryOptions {
  /** Attempts in total, the first included; `1` disables retries. Default 5. */
  maxAttempts?: number;
  /** Scale of the first retry's delay range, ms. Default 250. */
  baseDelayMs?: number;
  /** Upper bound of a jittered delay, ms. Default 10 000. */
  maxDelayMs?: number;
  /** The longest `Retry-After` the SDK waits for; a longer one ends the retries at once. Default 60 000 ms. */
  maxRetryAfterMs?: number;
  /** Time limit of one attempt (request and body), ms; an attempt over it counts as a network error. Default 30 000. */
  attemptTimeoutMs?: number;
  /** Uniform random source in [0, 1) for the jitter; `Math.random` by default (tests fix it). */
  random?: RandomSource;
  /**
   * Which failures are retried. Default `"transient"`.
   * - `"transient"`: 429, 503, 502, 504 and network errors (per {@link CallKind}).
   * - `"unconfirmed"`: only a failure after which the request **may have taken effect** — 502,
   *   504 (`ACCEPT_UNCONFIRMED`) and a lost answer — so that repeating it learns the outcome.
   *   A 429 or 503 (nothing was done) ends the call at once with that error, for a caller that
   *   lets its user decide (e.g. "nothing was saved — retry?").
   */
  retryOn?: "transient" | "unconfirmed";
}

/** What `onRetry` (client-wide {@link ClientOptions.onRetry}, or per call) is told before each retry. */
export interface RetryInfo {
  method: string;
  path: string;
  /** The attempt that failed (1 = the first). */
  attempt: number;
  /** How long the SDK waits before the next attempt, ms. */
  delayMs: number;
  /** Why the attempt failed. */
  error: NexusApiError;
  /** True once any attempt of this call may have taken effect (504, 502, or a lost answer). */
  unconfirmed: boolean;
}

/**
 * How a call may be repeated:
 * - `write`: changes state under an idempotency key (command_id, the ask's decision, the
 *   settings correlation id), so the same request again is harmless: retried on 429, 502, 503,
 *   504 and network errors; when it may have taken effect and no attempt confirmed it, the
 *   final error is `ACCEPT_UNCONFIRMED` (docs/contract.md "What an answer promises").
 * - `read`: no effect; retried on the same statuses.
 * - `once`: changes state without an idempotency key: retried only on 429 and 503, which
 *   promise that nothing was done.
 */
export type CallKind = "write" | "read" | "once";

/** One HTTP call as {@link Transport.call} takes it. */
export interface CallSpec<T> {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  /** Path under the base URL, starting with `/`. */
  path: string;
  query?: Record<string, string | number | undefined>;
  /** A JSON body; serialised once, so every attempt sends the same bytes. */
  json?: unknown;
  /** A multipart body; the same object is sent by every attempt. */
  form?: FormData;
  headers?: Record<string, string>;
  kind: CallKind;
  /** Parses the 2xx body (`undefined` when empty). Throw to report `INVALID_RESPONSE`. */
  parse: (body: unknown, status: number) => T;
  /** The request's correlation id, for errors without a body. */
  correlationId?: string;
  signal?: AbortSignal;
  /**
   * This call's retry policy: fields given here override the client's; `false` sends one
   * attempt only (no retries at all).
   */
  retry?: RetryOptions | false;
  /** Told before each retry of this call, after the client-wide `onRetry`. */
  onRetry?: (info: RetryInfo) => void;
}

/** Settings shared by every call of one client. */
export interface TransportOptions {
  baseUrl: string;
  auth: ClientAuth;
  fetch: typeof fetch;
  retry: ResolvedRetry;
  onRetry?: (info: RetryInfo) => void;
}

/** A {@link RetryOptions} with every field set. */
export type ResolvedRetry = Required<Omit<RetryOptions, "random">> & { random: RandomSource };

/** The retry defaults (see {@link RetryOptions}). */
export const DEFAULT_RETRY: Required<Omit<RetryOptions, "random">> = {
  maxAttempts: 5,
  baseDelayMs: 250,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
  attemptTimeoutMs: 30_000,
  retryOn: "transient",
};

/** The policy of one call: the client's, overridden by the call's (`false`: one attempt). */
export function resolveRetry(base: ResolvedRetry, call: RetryOptions | false | undefined): ResolvedRetry {
  if (call === false) return { ...base, maxAttempts: 1 };
  if (call === undefined) return base;
  const out = { ...base };
  for (const [k, v] of Object.entries(call)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function retryableStatus(status: number, kind: CallKind, retryOn: ResolvedRetry["retryOn"]): boolean {
  if (status === 429 || status === 503) return retryOn === "transient";
  return (status === 502 || status === 504) && kind !== "once";
}

/**
 * True when a failed `fetch` certainly never delivered the request (connection refused, host
 * not found), so it cannot have taken effect. Node's fetch names the cause (`cause.code`);
 * browsers say nothing, and then the answer is false: unknown means "may have taken effect".
 */
function neverSent(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN";
}

function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return typeof code === "string" ? `${msg}: ${code}` : msg;
}

/** Joins a base URL, a path and query parameters (undefined ones are left out). */
export function buildUrl(baseUrl: string, path: string, query?: Record<string, string | number | undefined>): string {
  const u = new URL(baseUrl.replace(/\/+$/, "") + path);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
  return u.toString();
}

/**
 * The HTTP layer: auth headers, JSON, the standard error body and the retry policy.
 * Uses only `fetch`, `AbortSignal`, `URL` and `FormData`, so it runs in browsers and Node 22+.
 */
export class Transport {
  readonly options: TransportOptions;

  constructor(options: TransportOptions) {
    this.options = options;
  }

  /**
   * Performs `spec` with retries.
   * @returns the parsed 2xx body.
   *
   * A `401 CREDENTIAL_EXPIRED` answer, in bearer mode with `auth.renew`, renews the
   * credential once per call and sends the same request again at once (not counted as a retry).
   *
   * @throws {NexusApiError} the last failure (`ACCEPT_UNCONFIRMED` for an unconfirmed write);
   *   the signal's reason when `spec.signal` aborts.
   */
  async call<T>(spec: CallSpec<T>): Promise<T> {
    const retry = resolveRetry(this.options.retry, spec.retry);
    const { auth } = this.options;
    const url = buildUrl(this.options.baseUrl, spec.path, spec.query);
    const body = spec.form ?? (spec.json === undefined ? undefined : JSON.stringify(spec.json));
    let unconfirmed = false;
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      let failure: NexusApiError;
      let retryable: boolean;
      /** Whether the default policy would retry it (decides `ACCEPT_UNCONFIRMED` at the end). */
      let transient: boolean;
      let retryAfterMs: number | undefined;
      const signals = [AbortSignal.timeout(retry.attemptTimeoutMs)];
      if (spec.signal) signals.push(spec.signal);
      // A token function's failure is the caller's, not a network error: it is not retried.
      const headers: Record<string, string> = {
        accept: "application/json",
        ...(await authHeaders(this.options.auth)),
        ...(spec.json !== undefined ? { "content-type": "application/json" } : {}),
        ...spec.headers,
      };
      try {
        const res = await this.options.fetch(url, {
          method: spec.method,
          headers,
          body,
          signal: AbortSignal.any(signals),
        });
        const text = await res.text();
        if (res.ok) return this.parse(spec, res.status, text, attempt);
        retryAfterMs = parseRetryAfterMs(res.headers.get("retry-after"));
        failure = errorFromResponse(res.status, text, {
          correlation_id: spec.correlationId,
          attempts: attempt,
          retryAfterMs,
        });
        if (
          res.status === 401 &&
          failure.code === "CREDENTIAL_EXPIRED" &&
          !renewed &&
          auth.mode === "bearer" &&
          auth.renew
        ) {
          renewed = true;
          if (await auth.renew().catch(() => false)) {
            attempt--; // the same attempt again, with the new credential
            continue;
          }
        }
        retryable = retryableStatus(res.status, spec.kind, retry.retryOn);
        transient = retryableStatus(res.status, spec.kind, "transient");
        if (res.status === 502 || res.status === 504) unconfirmed = true;
      } catch (err) {
        if (spec.signal?.aborted) throw spec.signal.reason;
        if (err instanceof NexusApiError) throw err;
        // No answer: the request may or may not have reached the server.
        failure = new NexusApiError({
          code: "NETWORK_ERROR",
          message: `${spec.method} ${spec.path}: no answer (${describe(err)})`,
          recoverable: true,
          status: 0,
          correlation_id: spec.correlationId,
          attempts: attempt,
          cause: err,
        });
        const mayHaveArrived = !neverSent(err);
        transient = spec.kind !== "once";
        retryable = transient && (retry.retryOn === "transient" || mayHaveArrived);
        if (mayHaveArrived) unconfirmed = true;
      }
      const tooLong = retryAfterMs !== undefined && retryAfterMs > retry.maxRetryAfterMs;
      if (!retryable || attempt >= retry.maxAttempts || tooLong)
        throw this.finalError(spec, failure, transient && unconfirmed, attempt);
      const delayMs = Math.max(
        fullJitterMs(attempt, retry.baseDelayMs, retry.maxDelayMs, retry.random),
        retryAfterMs ?? 0,
      );
      const info: RetryInfo = {
        method: spec.method,
        path: spec.path,
        attempt,
        delayMs,
        error: failure,
        unconfirmed: unconfirmed && spec.kind === "write",
      };
      this.options.onRetry?.(info);
      spec.onRetry?.(info);
      await sleep(delayMs, spec.signal);
    }
  }

  private parse<T>(spec: CallSpec<T>, status: number, text: string, attempt: number): T {
    try {
      return spec.parse(text === "" ? undefined : JSON.parse(text), status);
    } catch (cause) {
      throw new NexusApiError({
        code: "INVALID_RESPONSE",
        message: `${spec.method} ${spec.path}: the ${status} answer does not match its schema`,
        recoverable: false,
        status,
        correlation_id: spec.correlationId,
        attempts: attempt,
        cause,
      });
    }
  }

  /**
   * A write that may have taken effect and was never confirmed ends as `ACCEPT_UNCONFIRMED`,
   * whatever the last attempt said (a 503 after a 504 only says the *last* attempt stored nothing).
   */
  private finalError(spec: CallSpec<unknown>, last: NexusApiError, unconfirmed: boolean, attempts: number) {
    if (spec.kind === "write" && unconfirmed)
      return new NexusApiError({
        code: "ACCEPT_UNCONFIRMED",
        message:
          "The request may have taken effect but no attempt confirmed it; send the same request again to learn the outcome (202 or 409), or watch the stream",
        recoverable: true,
        status: last.status,
        correlation_id: last.correlation_id ?? spec.correlationId,
        attempts,
        cause: last,
      });
    if (last.attempts === attempts) return last;
    return new NexusApiError({
      code: last.code,
      message: last.message,
      recoverable: last.recoverable,
      status: last.status,
      details: last.details,
      stage: last.stage,
      correlation_id: last.correlation_id,
      attempts,
      retryAfterMs: last.retryAfterMs,
      cause: last.cause,
    });
  }
}

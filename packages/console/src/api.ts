/**
 * The console's requests. Every answer is only "accepted" or an error: a 202 never changes what
 * the page shows (LOCKED rules 1-3); the stream does.
 */
import { parseCursor, ReportEvent, type Tenant } from "@nexus/contracts";
import { tenantHeaders } from "./tenant.ts";
import { readError, type WireError, withExtras } from "./wire.ts";

/** The outcome of a request: the 2xx body, or the error (status 0: the network failed). */
export type ApiResult =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; status: number; error: WireError; correlation_id?: string };

/** The pseudo code of a request that never got an answer. */
export const NETWORK_ERROR = "NETWORK_ERROR";

async function send(path: string, init: RequestInit): Promise<ApiResult> {
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch {
    return { ok: false, status: 0, error: { code: NETWORK_ERROR, message: "", recoverable: true } };
  }
  let json: unknown = null;
  try {
    json = await res.json();
  } catch {
    // Not JSON (a proxy's HTML error page, an empty body).
  }
  if (res.ok) return { ok: true, status: res.status, body: (json ?? {}) as Record<string, unknown> };
  const body = json as { error?: unknown; correlation_id?: unknown } | null;
  const error = readError(body?.error);
  if (error) {
    return {
      ok: false,
      status: res.status,
      error,
      ...(typeof body?.correlation_id === "string" ? { correlation_id: body.correlation_id } : {}),
    };
  }
  const code = res.status === 504 ? "ACCEPT_UNCONFIRMED" : res.status === 503 ? "DEPENDENCY_UNAVAILABLE" : "INTERNAL";
  return { ok: false, status: res.status, error: { code, message: "", recoverable: res.status >= 500 } };
}

/**
 * Sends `body` as JSON with the tenant headers.
 * @param method `POST` (commands, decisions) or `PATCH` (settings)
 * @param correlationId sent as `x-correlation-id`
 */
export function sendJson(
  tenant: Tenant,
  method: "POST" | "PATCH",
  path: string,
  body: unknown,
  correlationId?: string,
): Promise<ApiResult> {
  return send(path, {
    method,
    headers: {
      ...tenantHeaders(tenant),
      "content-type": "application/json",
      accept: "application/json",
      ...(correlationId ? { "x-correlation-id": correlationId } : {}),
    },
    body: JSON.stringify(body),
  });
}

/** Uploads a profile photo as `multipart/form-data` field `photo` to `POST /profile/photo`. */
export function uploadPhoto(tenant: Tenant, file: File, correlationId?: string): Promise<ApiResult> {
  const form = new FormData();
  form.append("photo", file, file.name);
  return send("/profile/photo", {
    method: "POST",
    headers: {
      ...tenantHeaders(tenant),
      accept: "application/json",
      ...(correlationId ? { "x-correlation-id": correlationId } : {}),
    },
    body: form,
  });
}

/** The `correlation_id` of a 202 body, if it has one. */
export function acceptedCorrelationId(r: ApiResult): string | undefined {
  return r.ok && typeof r.body.correlation_id === "string" ? r.body.correlation_id : undefined;
}

/**
 * True when the request may have taken effect and sending the very same request again learns
 * the outcome: `504 ACCEPT_UNCONFIRMED`, or no answer at all. (`503 DEPENDENCY_UNAVAILABLE` is
 * not: nothing was stored.)
 */
export function isUnconfirmed(r: ApiResult): boolean {
  return !r.ok && (r.error.code === "ACCEPT_UNCONFIRMED" || r.status === 0 || r.status === 504);
}

/** Options of {@link sendUntilConfirmed}. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 6). */
  attempts?: number;
  /** First delay in ms (default 500), doubled per attempt up to {@link RetryOptions.maxDelayMs}. */
  delayMs?: number;
  /** Largest delay in ms (default 8000). */
  maxDelayMs?: number;
  /** Told before each retry (1-based), e.g. to show "confirming…". */
  onRetry?(attempt: number, last: ApiResult): void;
  sleep?(ms: number): Promise<void>;
}

/**
 * Sends `request` until its outcome is known: retries the same request (same body, same ids)
 * while the answer is "unconfirmed" ({@link isUnconfirmed}), with bounded exponential backoff.
 * Safe only for idempotent requests (a decision, a command with its `command_id`). Returns the
 * last answer, which may still be unconfirmed when every attempt was.
 */
export async function sendUntilConfirmed(request: () => Promise<ApiResult>, o: RetryOptions = {}): Promise<ApiResult> {
  const attempts = o.attempts ?? 6;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let r = await request();
  for (let i = 1; i < attempts && isUnconfirmed(r); i++) {
    o.onRetry?.(i, r);
    await sleep(Math.min(o.maxDelayMs ?? 8000, (o.delayMs ?? 500) * 2 ** (i - 1)));
    r = await request();
  }
  return r;
}

/** A page of `GET /agent/reports` (CONTRACT.md "history"), or why there is none. */
export type HistoryPage =
  | { kind: "page"; reports: ReportEvent[]; next_before: string | null }
  | { kind: "unsupported" }
  | { kind: "error"; error: WireError };

/**
 * Fetches reports older than `before` (newest first). `unsupported` when the server has no
 * history endpoint (404 without the standard body, or `NOT_FOUND`): the console then hides "load older".
 */
export async function fetchHistory(tenant: Tenant, before: number, limit = 100): Promise<HistoryPage> {
  const q = new URLSearchParams({ before: String(before), limit: String(limit) });
  const r = await send(`/agent/reports?${q}`, {
    headers: { ...tenantHeaders(tenant), accept: "application/json" },
  });
  if (!r.ok) return r.status === 404 || r.status === 405 ? { kind: "unsupported" } : { kind: "error", error: r.error };
  const raw = Array.isArray(r.body.reports) ? r.body.reports : [];
  const reports: ReportEvent[] = [];
  for (const item of raw) {
    const p = ReportEvent.safeParse(item);
    if (p.success) reports.push(withExtras(p.data, item));
  }
  const next = r.body.next_before;
  return {
    kind: "page",
    reports,
    next_before: typeof next === "string" && parseCursor(next) !== null ? next : null,
  };
}

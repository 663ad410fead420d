/**
 * The console's requests. Every answer is only "accepted" or an error: a 202 never changes what
 * the page shows (LOCKED rules 1-3); the stream does.
 */
import { parseCursor, ReportEvent, type Tenant } from "@nexus/contracts";
import { credentials } from "./credentials.ts";
import { readError, type WireError, withExtras } from "./wire.ts";

/** The outcome of a request: the 2xx body, or the error (status 0: the network failed). */
export type ApiResult =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; status: number; error: WireError; correlation_id?: string };

/** The pseudo code of a request that never got an answer. */
export const NETWORK_ERROR = "NETWORK_ERROR";

/**
 * Sends one request with the current credentials ({@link credentials}). When the server says
 * the credential expired (`401 CREDENTIAL_EXPIRED`, recoverable), the credential is renewed and
 * the very same request is sent once more; `401 UNAUTHENTICATED` tells the credential it was refused.
 */
async function send(tenant: Tenant, path: string, init: RequestInit): Promise<ApiResult> {
  const r = await sendOnce(tenant, path, init);
  if (r.ok || r.status !== 401) return r;
  const c = credentials();
  if (r.error.code === "CREDENTIAL_EXPIRED" && (await c.renew())) {
    const again = await sendOnce(tenant, path, init);
    if (!again.ok && again.status === 401 && again.error.code !== "CREDENTIAL_EXPIRED") c.rejected();
    return again;
  }
  if (r.error.code !== "CREDENTIAL_EXPIRED") c.rejected();
  return r;
}

async function sendOnce(tenant: Tenant, path: string, init: RequestInit): Promise<ApiResult> {
  let res: Response;
  try {
    res = await fetch(path, {
      ...init,
      headers: { ...credentials().headers(tenant), ...(init.headers as Record<string, string> | undefined) },
    });
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
  return send(tenant, path, {
    method,
    headers: {
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
  return send(tenant, "/profile/photo", {
    method: "POST",
    headers: {
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

/** A page of `GET /agent/reports` (docs/contract.md "history"), or why there is none. */
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
  const r = await send(tenant, `/agent/reports?${q}`, { headers: { accept: "application/json" } });
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

/**
 * A one-use stream ticket (`POST /agent/reports/ticket`, lives at most 60 s): the stream is
 * opened with `?ticket=` instead of a token in the URL. `null` when none could be had (the
 * stream client then tries again after its backoff).
 */
export async function fetchTicket(tenant: Tenant): Promise<string | null> {
  const r = await send(tenant, "/agent/reports/ticket", { method: "POST", headers: { accept: "application/json" } });
  return r.ok && typeof r.body.ticket === "string" && r.body.ticket !== "" ? r.body.ticket : null;
}

/**
 * Fetches an image that needs the request's credentials (the profile photo in JWT mode, where an
 * `<img src>` cannot send `Authorization`) and returns an object URL for it, or `null`.
 * The caller revokes the URL when done.
 */
export async function fetchImage(tenant: Tenant, url: string): Promise<string | null> {
  try {
    let res = await fetch(url, { headers: credentials().headers(tenant) });
    if (res.status === 401 && (await credentials().renew()))
      res = await fetch(url, { headers: credentials().headers(tenant) });
    return res.ok ? URL.createObjectURL(await res.blob()) : null;
  } catch {
    return null;
  }
}

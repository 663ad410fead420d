/**
 * The console's requests, made with the SDK (`@nexus/client`). Every answer is only "accepted"
 * or an error: a 202 never changes what the page shows (LOCKED rules 1-3); the stream does.
 *
 * What this module adds to the SDK is the console's policy, per call:
 * - commands and decisions retry only what may have taken effect ({@link CONFIRM_RETRY}: a 504
 *   `ACCEPT_UNCONFIRMED` or no answer, with the same body) and say "confirming…" meanwhile; a
 *   503 comes back at once, so the page can say "nothing was saved" and offer a retry;
 * - settings, the photo and history pages are sent once (the page shows the error);
 * - the credential ({@link credentials}): signed in, `Authorization: Bearer` with the SDK renewing
 *   the token once and sending the same request again after `401 CREDENTIAL_EXPIRED`; a final
 *   `401` of any other code tells the credential it was refused (the page signs in again).
 *
 * Answers are turned into {@link ApiResult}s, which the components read.
 */
import {
  type ClientAuth,
  type CommandParams,
  type CompliancePatchInput,
  createClient,
  isNexusApiError,
  type NexusClient,
  type RetryOptions,
  type HistoryPage as SdkHistoryPage,
} from "@nexus/client";
import type { PersonaPatch, ProfilePatch, ReportEvent, SkinPatch, Tenant } from "@nexus/contracts";
import { credentials } from "./credentials.ts";
import type { WireError } from "./wire.ts";

/** The outcome of a request: the 2xx body, or the error (status 0: the network failed). */
export type ApiResult =
  | { ok: true; body: Record<string, unknown> }
  | { ok: false; status: number; error: WireError; correlation_id?: string };

/** The code of a request that never got an answer (the SDK's `NETWORK_ERROR`, status 0). */
export const NETWORK_ERROR = "NETWORK_ERROR";

/**
 * How commands and decisions are repeated: only while the outcome is unknown (504
 * `ACCEPT_UNCONFIRMED`, or no answer at all), six attempts, waiting 0.5 s, 1 s, 2 s, 4 s, 8 s
 * (`random: () => 1` takes the top of the SDK's full-jitter range: the console's fixed schedule).
 * A 503 or 429 is not retried: nothing was stored, the user decides.
 */
export const CONFIRM_RETRY: RetryOptions = {
  retryOn: "unconfirmed",
  maxAttempts: 6,
  baseDelayMs: 500,
  maxDelayMs: 8000,
  random: () => 1,
};

/** The SDK's credentials for `tenant`: signed in, the bearer token (renewed by the session); else the tenant headers. */
export function clientAuth(tenant: Tenant): ClientAuth {
  const c = credentials();
  if (c.kind === "bearer") return { mode: "bearer", token: () => c.token() ?? "", renew: () => c.renew() };
  return { mode: "headers", tenant };
}

/**
 * An SDK client of this page's origin for `tenant`, with the current credential. Cheap (no
 * connection is held): made per request, so a sign-in or sign-out takes effect at once.
 */
export function api(tenant: Tenant): NexusClient {
  return createClient({ baseUrl: globalThis.location?.origin ?? "http://localhost", auth: clientAuth(tenant) });
}

/** An SDK error as the components show it. */
function wireError(e: { code: string; message: string; recoverable: boolean; details?: unknown; stage?: string }) {
  const error: WireError = { code: e.code, message: e.message, recoverable: e.recoverable };
  if (Array.isArray(e.details) && e.details.length > 0) error.details = e.details as WireError["details"];
  if (e.stage) error.stage = e.stage;
  return error;
}

/** A failed call as an {@link ApiResult}; a final `401` other than `CREDENTIAL_EXPIRED` tells the credential it was refused. */
function failure(e: unknown): Extract<ApiResult, { ok: false }> {
  if (!isNexusApiError(e)) {
    // Not an answer of the server (e.g. the token could not be read): shown as "no answer".
    return { ok: false, status: 0, error: { code: NETWORK_ERROR, message: String(e), recoverable: true } };
  }
  if (e.status === 401 && e.code !== "CREDENTIAL_EXPIRED") credentials().rejected();
  return {
    ok: false,
    status: e.status,
    error: wireError(e),
    ...(e.correlation_id ? { correlation_id: e.correlation_id } : {}),
  };
}

/** Runs an SDK call and turns its outcome into an {@link ApiResult}. */
async function result(call: () => Promise<object | undefined>): Promise<ApiResult> {
  try {
    return { ok: true, body: ((await call()) ?? {}) as Record<string, unknown> };
  } catch (e) {
    return failure(e);
  }
}

/** The body the composer sends: the canonical `POST /sidecar/command` body with its `command_id`. */
export interface CommandBody {
  command_id: string;
  type: string;
  params: Record<string, unknown>;
  context?: Record<string, unknown>;
  client_context?: { surface?: string; correlation_id?: string; [key: string]: unknown };
}

/**
 * `POST /sidecar/command` with {@link CONFIRM_RETRY}; `onConfirming` is told before each retry
 * (the same `command_id`, the idempotency key, so a repeat never runs it twice).
 */
export function sendCommand(tenant: Tenant, body: CommandBody, onConfirming?: () => void): Promise<ApiResult> {
  return result(() =>
    api(tenant).sendCommand(
      { ...body, params: body.params as CommandParams<string> },
      {
        retry: CONFIRM_RETRY,
        onRetry: () => onConfirming?.(),
      },
    ),
  );
}

/** The body of `POST /approvals/{ask_id}/decide`. */
export interface DecisionBody {
  decision: "approve" | "reject";
  correlation_id: string;
  note?: string;
  action_hash?: string;
}

/** `POST /approvals/{ask_id}/decide` with {@link CONFIRM_RETRY}, like {@link sendCommand}. */
export function decide(tenant: Tenant, askId: string, body: DecisionBody, onConfirming?: () => void) {
  return result(() => api(tenant).decide(askId, body, { retry: CONFIRM_RETRY, onRetry: () => onConfirming?.() }));
}

/** A settings section and its patch. */
export type SettingsPatch =
  | { section: "profile"; patch: ProfilePatch }
  | { section: "persona"; patch: PersonaPatch }
  | { section: "skin"; patch: SkinPatch }
  | { section: "compliance"; patch: CompliancePatchInput };

/**
 * `PATCH` of one settings section, sent once with `x-correlation-id: correlationId` (the
 * `settings.updated` report carries it; the page waits for that).
 */
export function saveSettings(tenant: Tenant, s: SettingsPatch, correlationId: string): Promise<ApiResult> {
  const c = api(tenant);
  const o = { correlationId, retry: false as const };
  switch (s.section) {
    case "profile":
      return result(() => c.updateProfile(s.patch, o));
    case "persona":
      return result(() => c.updatePersona(s.patch, o));
    case "skin":
      return result(() => c.updateSkin(s.patch, o));
    case "compliance":
      return result(() => c.updateCompliance(s.patch, o));
  }
}

/** Uploads a profile photo as `multipart/form-data` field `photo` to `POST /profile/photo`, once. */
export function uploadPhoto(tenant: Tenant, file: File, correlationId: string): Promise<ApiResult> {
  return result(() => api(tenant).uploadPhoto(file, file.name, { correlationId, retry: false }));
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

/** A page of `GET /agent/reports` (docs/contract.md "history"), or why there is none. */
export type HistoryPage =
  | { kind: "page"; reports: ReportEvent[]; next_before: string | null }
  | { kind: "unsupported" }
  | { kind: "error"; error: WireError };

/**
 * Fetches reports older than `before` (newest first), each validated by the contracts and kept
 * as received. `unsupported` when the server has no history endpoint (404 or 405): the console
 * then hides "load older".
 */
export async function fetchHistory(tenant: Tenant, before: number, limit = 100): Promise<HistoryPage> {
  let page: SdkHistoryPage;
  try {
    page = await api(tenant).history({ before: String(before), limit, keepReceived: true }, { retry: false });
  } catch (e) {
    if (isNexusApiError(e) && (e.status === 404 || e.status === 405)) return { kind: "unsupported" };
    return { kind: "error", error: failure(e).error };
  }
  return { kind: "page", reports: page.reports, next_before: page.next_before };
}

/**
 * Fetches an image that needs the request's credentials (the profile photo in JWT mode, where an
 * `<img src>` cannot send `Authorization`) and returns an object URL for it, or `null`.
 * The caller revokes the URL when done. (An image is not an API answer: plain `fetch`.)
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

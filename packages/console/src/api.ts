/**
 * The console's requests. Every answer is only "accepted" or an error: a 202 never changes
 * what the page shows (LOCKED rules 1-3); the stream does.
 */
import { type ApiError, ErrorBody, type Tenant } from "@nexus/contracts";
import { tenantHeaders } from "./tenant.ts";

/** The outcome of a request: the 202 body, or the standard error (synthesised for network failures). */
export type ApiResult =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; status: number; error: ApiError; correlation_id?: string };

async function send(path: string, init: RequestInit): Promise<ApiResult> {
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (err) {
    return {
      ok: false,
      status: 0,
      error: { code: "DEPENDENCY_UNAVAILABLE", message: `Network error: ${String(err)}`, recoverable: true },
    };
  }
  let json: unknown = null;
  try {
    json = await res.json();
  } catch {
    // Not JSON (a proxy's HTML error page, an empty body).
  }
  if (res.ok) return { ok: true, status: res.status, body: (json ?? {}) as Record<string, unknown> };
  const parsed = ErrorBody.safeParse(json);
  if (parsed.success) {
    return { ok: false, status: res.status, error: parsed.data.error, correlation_id: parsed.data.correlation_id };
  }
  return {
    ok: false,
    status: res.status,
    error: { code: "INTERNAL", message: `HTTP ${res.status} ${res.statusText}`.trim(), recoverable: res.status >= 500 },
  };
}

/**
 * Sends `body` as JSON with the tenant headers.
 * @param method `POST` (commands, decisions) or `PATCH` (settings)
 * @param correlationId sent as `x-correlation-id` (used by the settings endpoints)
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

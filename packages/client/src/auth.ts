import type { Tenant } from "@nexus/contracts";

/**
 * Header mode (docs/contract.md "Tenancy" and "Authentication"): the tenant in `x-org-id` /
 * `x-project-id`, and — for a trusted network only — the principal in `x-user-id` and its
 * roles in `x-roles` (comma-separated), taken by the server as given.
 */
export interface HeaderAuth {
  mode: "headers";
  tenant: Tenant;
  userId?: string;
  /** E.g. `["operator", "approver"]`; sent as `x-roles: operator,approver`. */
  roles?: string[];
}

/**
 * JWT mode: `Authorization: Bearer <jwt>` with claims `org_id`, `project_id`, `sub`.
 * `token` may be a function; it is called before every HTTP attempt and every stream
 * connection, so it can refresh an expiring token (an open stream ends with
 * `CREDENTIAL_EXPIRED` when its token expires, and the SDK reconnects with a fresh one).
 * `tenant`, when given, is also sent as headers; the server answers `403 TENANT_MISMATCH`
 * when it disagrees with the claims.
 */
export interface BearerAuth {
  mode: "bearer";
  token: string | (() => string | Promise<string>);
  tenant?: Tenant;
  /**
   * Renews the credential after the server said it expired: a `401 CREDENTIAL_EXPIRED` answer
   * (then the same request is sent once more, at once, when this resolves `true`) or the
   * stream's `CREDENTIAL_EXPIRED` event (called before the next connection). Resolve `false`
   * when no new credential could be had; the call then fails with the 401. `token` is read
   * again after a renewal, so it must return the new token. Concurrent calls may share one
   * renewal; that is up to the implementation.
   */
  renew?: () => Promise<boolean>;
}

/**
 * API-key mode: `x-api-key` plus the tenant headers (a key may cover several tenants).
 * Keys are secrets: the SDK never puts them in a URL or an error message.
 */
export interface ApiKeyAuth {
  mode: "apiKey";
  key: string;
  tenant: Tenant;
}

/** How the client authenticates; see each mode. */
export type ClientAuth = HeaderAuth | BearerAuth | ApiKeyAuth;

/**
 * The request headers for `auth`. Resolves a token function once per call.
 * @throws whatever the token function throws.
 */
export async function authHeaders(auth: ClientAuth): Promise<Record<string, string>> {
  const h: Record<string, string> = {};
  if (auth.tenant) {
    h["x-org-id"] = auth.tenant.org_id;
    h["x-project-id"] = auth.tenant.project_id;
  }
  switch (auth.mode) {
    case "headers":
      if (auth.userId !== undefined) h["x-user-id"] = auth.userId;
      if (auth.roles && auth.roles.length > 0) h["x-roles"] = auth.roles.join(",");
      break;
    case "bearer": {
      const token = typeof auth.token === "function" ? await auth.token() : auth.token;
      h.authorization = `Bearer ${token}`;
      break;
    }
    case "apiKey":
      h["x-api-key"] = auth.key;
      break;
  }
  return h;
}

/** True when a new attempt may present a different credential (a token function). */
export function canRefreshCredential(auth: ClientAuth): boolean {
  return auth.mode === "bearer" && typeof auth.token === "function";
}

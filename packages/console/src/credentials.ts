/**
 * How the console's requests authenticate: one module-level {@link Credentials} that `api.ts`
 * (the SDK's `auth`) and the stream use, so no component needs to know the mode.
 *
 * - **Header mode** (the gateway's `AUTH_MODE=header`, a trusted network): the tenant goes in
 *   `x-org-id` / `x-project-id`; the stream takes it as `?org_id=&project_id=`.
 * - **Signed in** (JWT mode, see `oidc.ts`): `Authorization: Bearer <access token>` on every
 *   request (the tenant comes from the token's claims); the stream is opened with a one-use ticket
 *   from `POST /agent/reports/ticket` for every connection, so no token is ever in a URL.
 */
import type { Tenant } from "@nexus/contracts";
import { tenantHeaders } from "./tenant.ts";

/** The credential behind every request of the console. */
export interface Credentials {
  /** `header` or `bearer` (signed in). */
  readonly kind: "header" | "bearer";
  /** The headers that authenticate a request for `tenant`. */
  headers(tenant: Tenant): Record<string, string>;
  /** The bearer token in use (signed in), else `null`. Read for every request. */
  token(): string | null;
  /**
   * Gets a new credential after the server said the current one expired (`401
   * CREDENTIAL_EXPIRED`, or the stream's `CREDENTIAL_EXPIRED` event). Resolves `true` when
   * requests may be sent again; `false` when none could be had (the page then signs in again).
   * Concurrent calls share one renewal.
   */
  renew(): Promise<boolean>;
  /** Told when the server refused the credential outright (`401 UNAUTHENTICATED`). */
  rejected(): void;
}

/** Header mode: the tenant as headers; nothing to renew. */
export const headerCredentials: Credentials = {
  kind: "header",
  headers: tenantHeaders,
  token: () => null,
  renew: async () => false,
  rejected: () => {},
};

let current: Credentials = headerCredentials;

/** The credential in use. */
export function credentials(): Credentials {
  return current;
}

/** Sets the credential in use (the sign-in, the sign-out, tests). */
export function setCredentials(c: Credentials): void {
  current = c;
}

/**
 * A bearer credential: `token()` is read for every request (so a renewal takes effect at once),
 * `renew` and `rejected` come from the session.
 */
export function bearerCredentials(o: {
  token(): string | null;
  renew(): Promise<boolean>;
  rejected(): void;
}): Credentials {
  return {
    kind: "bearer",
    headers: (): Record<string, string> => {
      const t = o.token();
      return t ? { authorization: `Bearer ${t}` } : {};
    },
    token: o.token,
    renew: o.renew,
    rejected: o.rejected,
  };
}

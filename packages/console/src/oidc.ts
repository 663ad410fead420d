/**
 * Sign-in for the gateway's JWT mode: OpenID Connect, authorization code flow with PKCE
 * (RFC 6749 §4.1, RFC 7636, OpenID Connect Core 1.0 §3.1), as a public client, with
 * [oauth4webapi](https://github.com/panva/oauth4webapi) doing discovery, the authorization
 * response checks (`state`, `iss`), the code exchange, the ID token's claims (`iss`, `aud`,
 * `exp`, `nonce`) and the refresh grant.
 *
 * - The sign-in is a top-level redirect to the provider's `authorization_endpoint` (the
 *   gateway's CSP forbids framing, and a redirect needs no exception); the provider sends the
 *   browser back to `/ui/` with `?code=&state=`, which the console exchanges at the
 *   `token_endpoint` with `fetch` (the gateway allows the issuer's origin in `connect-src`).
 * - Tokens live **in memory only**. `sessionStorage` (this tab) holds the PKCE verifier, `state`
 *   and `nonce` of a sign-in under way, and a flag that this tab was signed in: after a reload the
 *   console asks the provider again with `prompt=none` (no screen when the provider's session is
 *   still there; the sign-in screen when it answers `login_required`).
 * - Renewal: the refresh token grant when the provider issued a refresh token; otherwise a new
 *   `prompt=none` redirect.
 * - Who is signed in — principal (`sub`), roles (the gateway's `JWT_ROLES_CLAIM`), tenant
 *   (`org_id`, `project_id`) — is read from the access token's claims, as the gateway reads them.
 *   The console does not verify the signature: the gateway does, on every request.
 */
import type { Tenant } from "@nexus/contracts";
import { isTenantToken } from "@nexus/contracts";
import * as oauth from "oauth4webapi";
import type { RuntimeConfig } from "./runtime-config.ts";

/** Who is signed in, from the access token's claims. */
export interface Identity {
  /** `sub`. */
  principal: string;
  /** Known roles from the roles claim (`viewer`, `operator`, `approver`, `admin`). */
  roles: string[];
  /** `org_id` / `project_id`, when the token names a valid tenant. */
  tenant: Tenant | null;
  /** A display name (`name` or `preferred_username` of the ID token), when there is one. */
  name?: string;
  /** `exp` in ms since the epoch. */
  expiresAt: number | null;
}

const KNOWN_ROLES = ["viewer", "operator", "approver", "admin"];

/** The payload of a JWT, without verification; `null` when `jwt` is not one. */
export function decodeJwtPayload(jwt: string): Record<string, unknown> | null {
  const part = jwt.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const json = new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
    const v = JSON.parse(json) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The value at a dotted claim path (`realm_access.roles`). */
function claimAt(payload: Record<string, unknown>, path: string): unknown {
  let v: unknown = payload;
  for (const part of path.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[part] : undefined;
  return v;
}

/**
 * The identity an access token carries, read as the gateway reads it (`sub`, `org_id`,
 * `project_id`, roles at `rolesClaim`: an array or a space/comma separated string).
 */
export function identityOf(
  accessToken: string,
  rolesClaim: string,
  idClaims?: Record<string, unknown>,
): Identity | null {
  const p = decodeJwtPayload(accessToken);
  if (!p || typeof p.sub !== "string") return null;
  const raw = claimAt(p, rolesClaim);
  const names = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(/[\s,]+/) : [];
  const roles = [...new Set(names.filter((n): n is string => typeof n === "string" && KNOWN_ROLES.includes(n)))];
  const name = [idClaims?.name, idClaims?.preferred_username, p.name, p.preferred_username].find(
    (x): x is string => typeof x === "string" && x !== "",
  );
  return {
    principal: p.sub,
    roles,
    tenant:
      isTenantToken(p.org_id) && isTenantToken(p.project_id) ? { org_id: p.org_id, project_id: p.project_id } : null,
    ...(name ? { name } : {}),
    expiresAt: typeof p.exp === "number" ? p.exp * 1000 : null,
  };
}

/** sessionStorage keys. */
const PENDING_KEY = "nexus.console.oidc.pending";
const ACTIVE_KEY = "nexus.console.oidc.active";

/** A sign-in under way (in sessionStorage across the redirect). */
interface Pending {
  verifier: string;
  state: string;
  nonce: string;
  /** The console URL's query and hash to return to. */
  back: string;
  /** Whether this was a `prompt=none` attempt (its failure is not an error to show). */
  silent: boolean;
}

/** What {@link OidcSession.start} found. */
export type StartResult =
  | { kind: "signed-in" }
  | { kind: "redirecting" }
  | { kind: "signed-out" }
  | { kind: "error"; code: string; detail?: string };

/** The part of `window` the session uses (tests may pass another). */
export interface Host {
  location: { href: string; origin: string; assign(url: string): void };
  history: { replaceState(data: unknown, unused: string, url: string): void };
  storage: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
}

function browserHost(): Host {
  let storage: Storage | null = null;
  try {
    storage = window.sessionStorage;
  } catch {
    // Storage blocked: the sign-in still works, a reload signs in again.
  }
  return { location: window.location, history: window.history, storage };
}

/** The OAuth error codes of a `prompt=none` request that mean "ask the user" (OIDC Core §3.1.2.6). */
const INTERACTION_NEEDED = new Set([
  "login_required",
  "interaction_required",
  "consent_required",
  "account_selection_required",
]);

/**
 * One tab's OpenID Connect session (see the module doc). `start()` once at boot; then
 * `accessToken()`, `renew()` (on `CREDENTIAL_EXPIRED`), `signIn()`, `signOut()`.
 */
export class OidcSession {
  readonly config: NonNullable<RuntimeConfig["oidc"]>;
  private readonly rolesClaim: string;
  private readonly host: Host;
  private as: oauth.AuthorizationServer | null = null;
  private readonly client: oauth.Client;
  private access: string | null = null;
  private refresh: string | null = null;
  private idClaims: Record<string, unknown> | undefined;
  private renewing: Promise<boolean> | null = null;
  private readonly listeners = new Set<() => void>();
  /** Who is signed in; `null` when nobody is. */
  identity: Identity | null = null;

  constructor(config: RuntimeConfig, host: Host = browserHost()) {
    if (!config.oidc) throw new Error("OidcSession needs the oidc settings of /ui/config.json");
    this.config = config.oidc;
    this.rolesClaim = config.roles_claim;
    this.host = host;
    this.client = { client_id: this.config.client_id };
  }

  /** The redirect URI registered at the provider: the console's own `/ui/`. */
  get redirectUri(): string {
    return `${this.host.location.origin}/ui/`;
  }

  /** `fn` runs whenever the identity changes (signed in, renewed, signed out). */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  /** Requests to a provider on plain http are allowed only on a loopback address (development, tests). */
  private options<T extends object>(o: T): T {
    const u = new URL(this.config.issuer);
    const loopback = u.hostname === "127.0.0.1" || u.hostname === "localhost" || u.hostname === "[::1]";
    return u.protocol === "http:" && loopback ? { ...o, [oauth.allowInsecureRequests]: true } : o;
  }

  /** The provider's metadata (discovery, once). */
  private async server(): Promise<oauth.AuthorizationServer> {
    if (this.as) return this.as;
    const issuer = new URL(this.config.issuer);
    const res = await oauth.discoveryRequest(issuer, this.options({ algorithm: "oidc" as const }));
    this.as = await oauth.processDiscoveryResponse(issuer, res);
    return this.as;
  }

  private readPending(): Pending | null {
    try {
      const raw = this.host.storage?.getItem(PENDING_KEY);
      return raw ? (JSON.parse(raw) as Pending) : null;
    } catch {
      return null;
    }
  }

  /**
   * At boot: completes a sign-in when the URL is the provider's answer; else, when this tab was
   * signed in before (a reload), asks the provider again without a screen (`prompt=none`);
   * else reports "signed out".
   */
  async start(): Promise<StartResult> {
    const url = new URL(this.host.location.href);
    const pending = this.readPending();
    const isAnswer = url.searchParams.has("state") && (url.searchParams.has("code") || url.searchParams.has("error"));
    if (pending && isAnswer) return this.complete(url, pending);
    if (this.host.storage?.getItem(ACTIVE_KEY) === "1") {
      await this.signIn({ silent: true });
      return { kind: "redirecting" };
    }
    return { kind: "signed-out" };
  }

  /** Sends the browser to the provider's sign-in (a top-level redirect); `silent` asks with `prompt=none`. */
  async signIn(o: { silent?: boolean } = {}): Promise<void> {
    const as = await this.server();
    if (!as.authorization_endpoint) throw new Error("the provider names no authorization_endpoint");
    const verifier = oauth.generateRandomCodeVerifier();
    const pending: Pending = {
      verifier,
      state: oauth.generateRandomState(),
      nonce: oauth.generateRandomNonce(),
      back: stripAnswer(new URL(this.host.location.href)),
      silent: o.silent === true,
    };
    const u = new URL(as.authorization_endpoint);
    u.searchParams.set("client_id", this.config.client_id);
    u.searchParams.set("redirect_uri", this.redirectUri);
    u.searchParams.set("response_type", "code");
    u.searchParams.set("scope", this.config.scopes);
    u.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
    u.searchParams.set("code_challenge_method", "S256");
    u.searchParams.set("state", pending.state);
    u.searchParams.set("nonce", pending.nonce);
    if (this.config.audience) u.searchParams.set("audience", this.config.audience);
    if (o.silent) u.searchParams.set("prompt", "none");
    this.host.storage?.setItem(PENDING_KEY, JSON.stringify(pending));
    this.host.location.assign(u.href);
  }

  /** Exchanges the provider's answer for tokens. */
  private async complete(url: URL, pending: Pending): Promise<StartResult> {
    this.host.storage?.removeItem(PENDING_KEY);
    // The code never stays in the address bar or the history.
    this.host.history.replaceState(null, "", `${url.pathname}${pending.back}`);
    try {
      const as = await this.server();
      let params: URLSearchParams;
      try {
        params = oauth.validateAuthResponse(as, this.client, url, pending.state);
      } catch (err) {
        if (err instanceof oauth.AuthorizationResponseError) {
          if (pending.silent && INTERACTION_NEEDED.has(err.error)) {
            this.host.storage?.removeItem(ACTIVE_KEY);
            return { kind: "signed-out" };
          }
          return {
            kind: "error",
            code: err.error,
            ...(err.error_description ? { detail: err.error_description } : {}),
          };
        }
        throw err;
      }
      const res = await oauth.authorizationCodeGrantRequest(
        as,
        this.client,
        oauth.None(),
        params,
        this.redirectUri,
        pending.verifier,
        this.options({}),
      );
      const tokens = await oauth.processAuthorizationCodeResponse(as, this.client, res, {
        expectedNonce: pending.nonce,
        requireIdToken: true,
      });
      this.idClaims = oauth.getValidatedIdTokenClaims(tokens) as Record<string, unknown> | undefined;
      if (!this.accept(tokens)) return { kind: "error", code: "invalid_token" };
      this.host.storage?.setItem(ACTIVE_KEY, "1");
      return { kind: "signed-in" };
    } catch (err) {
      return { kind: "error", code: errorCode(err), detail: err instanceof Error ? err.message : String(err) };
    }
  }

  /** Keeps a token response; false when its access token names no principal. */
  private accept(tokens: oauth.TokenEndpointResponse): boolean {
    const identity = identityOf(tokens.access_token, this.rolesClaim, this.idClaims);
    if (!identity) return false;
    this.access = tokens.access_token;
    if (tokens.refresh_token) this.refresh = tokens.refresh_token;
    this.identity = identity;
    this.changed();
    return true;
  }

  /** The access token, or `null` when signed out. */
  accessToken(): string | null {
    return this.access;
  }

  /**
   * A new access token after `CREDENTIAL_EXPIRED`: the refresh grant when there is a refresh
   * token; otherwise (or when the provider refuses it) a `prompt=none` redirect, and the promise
   * never resolves (the page is leaving). Concurrent calls share one renewal.
   */
  renew(): Promise<boolean> {
    if (!this.renewing) {
      this.renewing = this.doRenew().finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }

  private async doRenew(): Promise<boolean> {
    if (!this.access) return false;
    if (this.refresh) {
      try {
        const as = await this.server();
        const res = await oauth.refreshTokenGrantRequest(as, this.client, oauth.None(), this.refresh, this.options({}));
        const tokens = await oauth.processRefreshTokenResponse(as, this.client, res);
        if (this.accept(tokens)) return true;
      } catch {
        // Refused (revoked, expired, rotated elsewhere) or unreachable: sign in again below.
      }
      this.refresh = null;
    }
    await this.signIn({ silent: true });
    return new Promise<boolean>(() => {});
  }

  /** The server refused the token outright: forget it (the page shows the sign-in). */
  rejected(): void {
    if (!this.access) return;
    this.clear();
  }

  private clear(): void {
    this.access = null;
    this.refresh = null;
    this.identity = null;
    this.host.storage?.removeItem(ACTIVE_KEY);
    this.changed();
  }

  /**
   * Signs out: forgets the tokens, and when the provider has an `end_session_endpoint` (OIDC
   * RP-Initiated Logout 1.0) sends the browser there to end the provider's session too, back
   * to `/ui/` afterwards. Resolves `true` when the page is leaving.
   */
  async signOut(): Promise<boolean> {
    this.clear();
    let end: string | undefined;
    try {
      end = (await this.server()).end_session_endpoint;
    } catch {
      end = undefined;
    }
    if (!end) return false;
    const u = new URL(end);
    u.searchParams.set("client_id", this.config.client_id);
    u.searchParams.set("post_logout_redirect_uri", this.redirectUri);
    // No id_token_hint: it would put a token in a URL (and in the provider's logs); client_id
    // identifies the client (RP-Initiated Logout 1.0 §2), at worst the provider asks to confirm.
    this.host.location.assign(u.href);
    return true;
  }
}

/** The query and hash of `url` without the authorization response's parameters. */
function stripAnswer(url: URL): string {
  for (const k of ["code", "state", "iss", "error", "error_description", "error_uri", "session_state"])
    url.searchParams.delete(k);
  const q = url.searchParams.toString();
  return `${q ? `?${q}` : ""}${url.hash}`;
}

/** A short code for an error thrown while signing in (the OAuth `error` when there is one). */
function errorCode(err: unknown): string {
  if (err instanceof oauth.ResponseBodyError) return err.error;
  if (err instanceof oauth.AuthorizationResponseError) return err.error;
  if (err instanceof TypeError) return "network";
  return "sign_in_failed";
}

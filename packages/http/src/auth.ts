/**
 * Authentication, tenancy and roles (docs/contract.md "Tenancy" and "Authentication", "Roles and
 * separation of duties").
 *
 * Credentials, in the order they are looked at:
 * 1. `Authorization: Bearer <jwt>` (or `?token=` on routes with `tenantFromQuery`) in JWT mode:
 *    verified with `jose` against `JWT_SECRET` (HS256) or the keys of `JWT_JWKS_URL`
 *    (RS256/ES256/EdDSA); `exp` is required and may lie at most `JWT_MAX_TTL_SECONDS` ahead,
 *    `iss`/`aud` are enforced when configured, `JWT_CLOCK_TOLERANCE_SECONDS` of skew is allowed.
 *    Claims `org_id`, `project_id`, `sub`; roles from the `JWT_ROLES_CLAIM` claim (a dotted path).
 * 2. `x-api-key` (or `?api_key=`): an admin-minted key (`nxk_…`, hashed in Postgres), a key of
 *    `API_KEYS`, `NEXUS_API_KEY` (operator + approver, tenant from the headers) or
 *    `ADMIN_API_KEY` (admin, tenant from the headers).
 * 3. `?ticket=` (the stream only): a one-use ticket from `POST /agent/reports/ticket`.
 * 4. Header mode only, and only when no API keys are configured: `x-org-id` / `x-project-id`,
 *    principal `x-user-id`, roles `x-roles` — as given; for a trusted network only.
 *
 * Every source that names the tenant must name the same one (`403 TENANT_MISMATCH`); a tenant
 * is never stitched together from parts of different sources. Failed authentications are
 * limited per client address (`AUTH_FAILURES_PER_MINUTE`, then `429`).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { commaList, isTenantToken, type Tenant } from "@nexus/contracts";
import { AppError, type Database, findApiKey, redeemTicket } from "@nexus/core";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from "jose";
import type { Kysely } from "kysely";
import { LRUCache } from "lru-cache";
import { z } from "zod";

const csv = commaList;

/** Authentication settings (gateway and stream); see README "Security" and "Configuration". */
export const AuthConfig = z.object({
  /** `header`: tenant from x-org-id / x-project-id (trusted network only); `jwt`: from a Bearer token. */
  AUTH_MODE: z.enum(["header", "jwt"]).default("header"),
  /** HS256 shared secret (at least 32 characters). */
  JWT_SECRET: z.string().min(32).optional(),
  /** JWKS URL of the identity provider (RS256, ES256, EdDSA keys), e.g. `…/.well-known/jwks.json`. */
  JWT_JWKS_URL: z.url().optional(),
  /** Accepted signing algorithms (default: HS256 with a secret; RS256,ES256,EdDSA with JWKS). */
  JWT_ALGORITHMS: csv,
  /** Required `iss`, when set. */
  JWT_ISSUER: z.string().optional(),
  /** Required `aud` (one of the token's audiences), when set. */
  JWT_AUDIENCE: z.string().optional(),
  /** Allowed clock skew for `exp`/`nbf`/`iat`, seconds (30). */
  JWT_CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(300).default(30),
  /** A token's `exp` may lie at most this far ahead, seconds (24 h): long-lived tokens are refused. */
  JWT_MAX_TTL_SECONDS: z.coerce.number().int().min(60).default(86_400),
  /** The claim holding the roles (a dotted path, e.g. `realm_access.roles`). */
  JWT_ROLES_CLAIM: z.string().default("roles"),
  /**
   * Static API keys, comma-separated `key:org_id:project_id[:principal[:role+role…]]`, where `key`
   * may be `sha256=<hex>` (only the hash at rest). Default roles: operator+approver.
   */
  API_KEYS: csv,
  /** One key for machine clients: operator + approver, tenant from the headers. */
  NEXUS_API_KEY: z.string().min(16).optional(),
  /** One key for administration: admin, tenant from the headers. */
  ADMIN_API_KEY: z.string().min(16).optional(),
  /** Failed authentications per client address per minute before `429` (0 = unlimited). */
  AUTH_FAILURES_PER_MINUTE: z.coerce.number().int().min(0).default(30),
});
export type AuthConfig = z.infer<typeof AuthConfig>;

/**
 * Roles (docs/contract.md "Roles and separation of duties"): `viewer` reads the stream, history and
 * snapshot; `operator` also sends commands; `approver` also decides asks; `admin` may do
 * everything (settings, compliance, dead letters, purge).
 */
export const Role = z.enum(["viewer", "operator", "approver", "admin"]);
export type Role = z.infer<typeof Role>;

/** True when `held` satisfies a route that requires any of `required` (`admin` satisfies all; every role reads). */
export function hasRole(held: readonly Role[], required: readonly Role[]): boolean {
  if (required.length === 0 || held.includes("admin")) return true;
  return required.some((r) => held.includes(r) || (r === "viewer" && held.length > 0));
}

/** How a request authenticated. */
export type CredentialKind = "header" | "jwt" | "api_key" | "ticket";

declare module "fastify" {
  interface FastifyRequest {
    /** The authenticated tenant; set on routes with `config: { tenant: true }`. */
    tenant: Tenant;
    /** Who is acting: the JWT `sub`, `apikey:<principal>`, or in header mode `x-user-id` (else `anonymous`). */
    principal: string;
    /** The principal's roles (see {@link Role}). */
    roles: Role[];
    /** How it authenticated. */
    credential: CredentialKind;
    /** When the credential expires, ms since the epoch (JWTs, tickets issued for JWTs). */
    credentialExpiresAt: number | undefined;
  }
  interface FastifyContextConfig {
    /** Resolve and require a tenant for this route. */
    tenant?: boolean;
    /** Also accept tenant and credentials from the query string (EventSource cannot send headers). */
    tenantFromQuery?: boolean;
    /** Roles of which the principal must hold one (403 FORBIDDEN otherwise); `admin` always may. */
    roles?: Role[];
  }
}

/** Roles from a claim value: an array of names or a space/comma separated string; unknown names are dropped. */
export function rolesOf(v: unknown): Role[] {
  const names = Array.isArray(v) ? v : typeof v === "string" ? v.split(/[\s,]+/) : [];
  return [...new Set(names.filter((n): n is Role => Role.safeParse(n).success))];
}

/** A statically configured key. */
interface StaticKey {
  digest: Buffer;
  /** A fixed tenant, or `undefined`: the tenant comes from the headers. */
  tenant?: Tenant;
  principal: string;
  roles: Role[];
}

const digestOf = (s: string) => createHash("sha256").update(s).digest();

/**
 * Parses `API_KEYS` entries `key:org_id:project_id[:principal[:role+role…]]` (`key` may be
 * `sha256=<hex>`); only sha256 digests are kept.
 * @throws {Error} naming a malformed entry.
 */
export function parseApiKeys(entries: string[]): StaticKey[] {
  return entries.map((e, i) => {
    const [key, org, project, principal, roles] = e.split(":");
    if (!key || !isTenantToken(org) || !isTenantToken(project))
      throw new Error(`API_KEYS entry ${i + 1} must be key:org_id:project_id[:principal[:roles]]`);
    const hashed = /^sha256=([0-9a-f]{64})$/.exec(key);
    return {
      digest: hashed ? Buffer.from(hashed[1] as string, "hex") : digestOf(key),
      tenant: { org_id: org, project_id: project },
      principal: `apikey:${principal ?? `key${i + 1}`}`,
      roles: roles ? rolesOf(roles.split("+")) : ["operator", "approver"],
    };
  });
}

function first(v: unknown): string | undefined {
  if (Array.isArray(v)) return typeof v[0] === "string" ? v[0] : undefined;
  return typeof v === "string" ? v : undefined;
}

const PRINCIPAL_RE = /^[\x21-\x7e]{1,128}$/;

/** Reads a dotted claim path (`realm_access.roles`). */
function claimAt(payload: JWTPayload, path: string): unknown {
  let v: unknown = payload;
  for (const part of path.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[part] : undefined;
  return v;
}

/** The tenant a request names by headers (and, where allowed, query parameters). */
interface Named {
  org?: string;
  project?: string;
}

/**
 * Resolves the tenant from everything that names it: every source must agree, and org and
 * project must come from the same source (docs/contract.md: never stitched together).
 */
function agreeOnTenant(sources: Named[], fixed?: Tenant): Tenant {
  const named = sources.filter((s) => s.org !== undefined || s.project !== undefined);
  for (const s of named)
    if (s.org === undefined || s.project === undefined)
      throw new AppError("INVALID_TENANT", "org_id and project_id must both be given by the same source", [
        { path: s.org === undefined ? "org_id" : "project_id", issue: "Required" },
      ]);
  if (fixed) {
    for (const s of named)
      if (s.org !== fixed.org_id || s.project !== fixed.project_id) throw new AppError("TENANT_MISMATCH");
    return fixed;
  }
  const [head, ...rest] = named;
  if (!head)
    throw new AppError("INVALID_TENANT", "x-org-id and x-project-id are required", [
      { path: "headers.x-org-id", issue: "Required" },
      { path: "headers.x-project-id", issue: "Required" },
    ]);
  for (const s of rest) if (s.org !== head.org || s.project !== head.project) throw new AppError("TENANT_MISMATCH");
  const details = [
    ...(isTenantToken(head.org) ? [] : [{ path: "org_id", issue: "must be 1-64 characters of [A-Za-z0-9_-]" }]),
    ...(isTenantToken(head.project) ? [] : [{ path: "project_id", issue: "must be 1-64 characters of [A-Za-z0-9_-]" }]),
  ];
  if (details.length) throw new AppError("INVALID_TENANT", undefined, details);
  return { org_id: head.org as string, project_id: head.project as string };
}

/** Options of {@link authPlugin}. */
export interface AuthPluginOptions {
  auth: AuthConfig;
  /** For admin-minted API keys and stream tickets (absent: neither is accepted). */
  db?: Kysely<Database>;
  /** Accept `?ticket=` (the stream service). */
  tickets?: boolean;
  /** The clock; tests may pass a fixed one. */
  now?: () => Date;
}

/** A JWT verification function built from the configuration. */
function jwtVerifier(auth: AuthConfig): ((token: string) => Promise<JWTPayload>) | undefined {
  if (auth.AUTH_MODE !== "jwt") return undefined;
  if (!auth.JWT_SECRET && !auth.JWT_JWKS_URL) throw new Error("AUTH_MODE=jwt needs JWT_SECRET or JWT_JWKS_URL");
  const algorithms = auth.JWT_ALGORITHMS.length
    ? auth.JWT_ALGORITHMS
    : auth.JWT_JWKS_URL
      ? ["RS256", "ES256", "EdDSA"]
      : ["HS256"];
  const jwks: JWTVerifyGetKey | undefined = auth.JWT_JWKS_URL
    ? createRemoteJWKSet(new URL(auth.JWT_JWKS_URL), { cooldownDuration: 30_000, cacheMaxAge: 600_000 })
    : undefined;
  const secret = auth.JWT_SECRET ? new TextEncoder().encode(auth.JWT_SECRET) : undefined;
  const options = {
    algorithms,
    clockTolerance: auth.JWT_CLOCK_TOLERANCE_SECONDS,
    requiredClaims: ["exp", "sub"],
    ...(auth.JWT_ISSUER ? { issuer: auth.JWT_ISSUER } : {}),
    ...(auth.JWT_AUDIENCE ? { audience: auth.JWT_AUDIENCE } : {}),
  };
  return async (token) => {
    const header = JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString() || "{}") as {
      alg?: string;
    };
    // An HMAC token is checked against the secret, any other against the JWKS; `algorithms`
    // still decides what is acceptable, so "alg: none" and algorithm confusion are refused.
    const key = header.alg?.startsWith("HS") ? secret : jwks;
    if (!key) throw new joseErrors.JOSEAlgNotAllowed(`"alg" (Algorithm) Header Parameter value not allowed`);
    const { payload } =
      typeof key === "function" ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
    const exp = payload.exp as number;
    if (exp * 1000 - Date.now() > auth.JWT_MAX_TTL_SECONDS * 1000)
      throw new joseErrors.JWTClaimValidationFailed("exp lies too far ahead", payload, "exp", "check_failed");
    return payload;
  };
}

/**
 * The auth plugin (see the module doc). For routes with `config: { tenant: true }` it sets
 * `req.tenant`, `req.principal`, `req.roles`, `req.credential` and `req.credentialExpiresAt`,
 * and enforces `config.roles`.
 * Errors: 400 `INVALID_TENANT`, 401 `UNAUTHENTICATED`, 401 `CREDENTIAL_EXPIRED` (an expired
 * token: recoverable), 403 `TENANT_MISMATCH`, 403 `FORBIDDEN`,
 * 429 `RATE_LIMITED` (too many failed authentications from one address).
 */
export const authPlugin = fp(
  async (app: FastifyInstance, opts: AuthPluginOptions) => {
    const { auth } = opts;
    const now = opts.now ?? (() => new Date());
    const verify = jwtVerifier(auth);
    const staticKeys: StaticKey[] = [
      ...parseApiKeys(auth.API_KEYS),
      ...(auth.NEXUS_API_KEY
        ? [
            {
              digest: digestOf(auth.NEXUS_API_KEY),
              principal: "apikey:nexus",
              roles: ["operator", "approver"] as Role[],
            },
          ]
        : []),
      ...(auth.ADMIN_API_KEY
        ? [{ digest: digestOf(auth.ADMIN_API_KEY), principal: "apikey:admin", roles: ["admin"] as Role[] }]
        : []),
    ];
    const keysRequired = staticKeys.length > 0;
    // Admin-minted keys are looked up at most once per 30 s (a revocation takes effect within it).
    const keyCache = new LRUCache<string, { key: Awaited<ReturnType<typeof findApiKey>> }>({
      max: 10_000,
      ttl: 30_000,
    });
    const failures = new LRUCache<string, number>({ max: 100_000, ttl: 60_000, ttlAutopurge: false });

    app.decorateRequest("tenant", null as unknown as Tenant);
    app.decorateRequest("principal", "anonymous");
    app.decorateRequest("roles", null as unknown as Role[]);
    app.decorateRequest("credential", "header");
    app.decorateRequest("credentialExpiresAt", undefined);

    const fail = (req: FastifyRequest, err: AppError): never => {
      if (
        auth.AUTH_FAILURES_PER_MINUTE > 0 &&
        (err.code === "UNAUTHENTICATED" || err.code === "TENANT_MISMATCH" || err.code === "CREDENTIAL_EXPIRED")
      ) {
        const n = (failures.get(req.ip) ?? 0) + 1;
        failures.set(req.ip, n, { noUpdateTTL: n > 1 });
      }
      throw err;
    };

    const staticKey = (presented: string): StaticKey | undefined => {
      const d = digestOf(presented);
      return staticKeys.find((k) => timingSafeEqual(k.digest, d));
    };

    app.addHook("onRequest", async (req) => {
      const cfg = req.routeOptions.config;
      if (!cfg?.tenant) return;
      if (auth.AUTH_FAILURES_PER_MINUTE > 0 && (failures.get(req.ip) ?? 0) >= auth.AUTH_FAILURES_PER_MINUTE)
        throw new AppError("RATE_LIMITED", "Too many failed authentications from this address", undefined, {
          stage: "auth",
        });
      const allowQuery = cfg.tenantFromQuery === true;
      const q = (allowQuery ? req.query : {}) as Record<string, unknown>;
      const fromHeaders: Named = { org: first(req.headers["x-org-id"]), project: first(req.headers["x-project-id"]) };
      const fromQuery: Named = allowQuery ? { org: first(q.org_id), project: first(q.project_id) } : {};
      try {
        // 1. A Bearer token (JWT mode).
        const bearer = first(req.headers.authorization);
        const token = bearer?.startsWith("Bearer ") ? bearer.slice(7).trim() : first(q.token);
        if (verify && token) {
          let claims: JWTPayload;
          try {
            claims = await verify(token);
          } catch (cause) {
            // An expired token is recoverable: the client fetches a new one and retries (or
            // resumes its stream); any other failure is not.
            if (cause instanceof joseErrors.JWTExpired)
              throw new AppError("CREDENTIAL_EXPIRED", "The token has expired", undefined, { cause, stage: "auth" });
            throw new AppError("UNAUTHENTICATED", "The token is invalid", undefined, { cause, stage: "auth" });
          }
          if (!isTenantToken(claims.org_id) || !isTenantToken(claims.project_id) || typeof claims.sub !== "string")
            throw new AppError(
              "UNAUTHENTICATED",
              "The token lacks valid org_id, project_id and sub claims",
              undefined,
              {
                stage: "auth",
              },
            );
          req.tenant = agreeOnTenant([fromHeaders, fromQuery], {
            org_id: claims.org_id,
            project_id: claims.project_id,
          });
          req.principal = claims.sub;
          req.roles = rolesOf(claimAt(claims, auth.JWT_ROLES_CLAIM));
          req.credential = "jwt";
          req.credentialExpiresAt = (claims.exp as number) * 1000;
          return;
        }
        // 2. An API key.
        const presented = first(req.headers["x-api-key"]) ?? first(q.api_key);
        if (presented) {
          const s = staticKey(presented);
          if (s) {
            req.tenant = agreeOnTenant([fromHeaders, fromQuery], s.tenant);
            req.principal = s.principal;
            req.roles = s.roles;
            req.credential = "api_key";
            return;
          }
          if (opts.db && presented.startsWith("nxk_")) {
            const cached = keyCache.get(presented) ?? { key: await findApiKey(opts.db, presented) };
            keyCache.set(presented, cached);
            const k = cached.key;
            if (k) {
              const tenant = agreeOnTenant([fromHeaders, fromQuery]);
              const covered = k.tenants.some(
                (x) => x === "*" || (x.org_id === tenant.org_id && x.project_id === tenant.project_id),
              );
              if (!covered) throw new AppError("TENANT_MISMATCH", "The API key does not cover this tenant");
              req.tenant = tenant;
              req.principal = `apikey:${k.principal}`;
              req.roles = rolesOf(k.roles);
              req.credential = "api_key";
              return;
            }
          }
          throw new AppError("UNAUTHENTICATED", "The API key is not valid", undefined, { stage: "auth" });
        }
        // 3. A stream ticket.
        const ticket = opts.tickets ? first(q.ticket) : undefined;
        if (ticket !== undefined) {
          const grant = opts.db ? await redeemTicket(opts.db, ticket, now()) : undefined;
          if (!grant)
            throw new AppError("UNAUTHENTICATED", "The ticket is unknown, used or expired", undefined, {
              stage: "auth",
            });
          req.tenant = agreeOnTenant([fromHeaders, fromQuery], grant.tenant);
          req.principal = grant.principal;
          req.roles = rolesOf(grant.roles);
          req.credential = "ticket";
          req.credentialExpiresAt = grant.credentialExpiresAt;
          return;
        }
        // 4. Header mode, when nothing stronger is configured.
        if (verify) throw new AppError("UNAUTHENTICATED", "A Bearer token is required", undefined, { stage: "auth" });
        if (keysRequired)
          throw new AppError("UNAUTHENTICATED", "A valid x-api-key is required", undefined, { stage: "auth" });
        req.tenant = agreeOnTenant([fromHeaders, fromQuery]);
        req.principal = headerPrincipal(req);
        req.roles = headerRoles(req);
        req.credential = "header";
      } catch (err) {
        if (err instanceof AppError) fail(req, err);
        throw err;
      }
    });

    // Authorisation runs after authentication (onRequest) for routes that name roles.
    app.addHook("preHandler", (req, _reply, done) => {
      const required = req.routeOptions.config?.roles;
      if (required && !hasRole(req.roles ?? [], required))
        return done(
          new AppError("FORBIDDEN", `This needs one of the roles ${required.join(", ")}`, undefined, {
            stage: "auth",
          }),
        );
      done();
    });
  },
  { name: "nexus-auth" },
);

/** Header mode's principal: `x-user-id` as given (a trusted network only), else `anonymous`. */
function headerPrincipal(req: FastifyRequest): string {
  const id = first(req.headers["x-user-id"]);
  if (id === undefined) return "anonymous";
  if (!PRINCIPAL_RE.test(id))
    throw new AppError("VALIDATION_FAILED", "x-user-id must be 1-128 printable characters without spaces", [
      { path: "headers.x-user-id", issue: "invalid" },
    ]);
  return id;
}

/**
 * Header mode's roles: `x-roles` (comma-separated) as given — a trusted network only; without
 * the header, `admin` (the local-development default).
 */
function headerRoles(req: FastifyRequest): Role[] {
  const h = first(req.headers["x-roles"]);
  if (h === undefined) return ["admin"];
  const roles = rolesOf(h);
  if (roles.length === 0 && h.trim() !== "")
    throw new AppError("VALIDATION_FAILED", "x-roles must name viewer, operator, approver or admin", [
      { path: "headers.x-roles", issue: "invalid" },
    ]);
  return roles;
}

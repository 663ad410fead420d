import { createHash, timingSafeEqual } from "node:crypto";
import fastifyJwt from "@fastify/jwt";
import { isTenantToken, type Tenant } from "@nexus/contracts";
import { AppError } from "@nexus/core";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { z } from "zod";

/** Parses a comma-separated env var into trimmed, non-empty strings. */
const csv = z
  .string()
  .default("")
  .transform((s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean),
  );

/** Authentication settings (gateway and stream); see README "Configuration". */
export const AuthConfig = z.object({
  /** `header`: tenant from x-org-id / x-project-id; `jwt`: from a Bearer token's claims. */
  AUTH_MODE: z.enum(["header", "jwt"]).default("header"),
  /** HS256 secret for JWT mode (at least 32 characters). */
  JWT_SECRET: z.string().min(32).optional(),
  /** Expected `iss` claim in JWT mode, when set. */
  JWT_ISSUER: z.string().optional(),
  /**
   * API keys, comma-separated `key:org_id:project_id[:principal]`. When set, every request must
   * carry a valid `x-api-key` unless it carries a valid JWT.
   */
  API_KEYS: csv,
});
export type AuthConfig = z.infer<typeof AuthConfig>;

/**
 * Roles (CONTRACT.md "Roles and separation of duties"): `viewer` reads the stream, history and
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

declare module "fastify" {
  interface FastifyRequest {
    /** The authenticated tenant; set on routes with `config: { tenant: true }`. */
    tenant: Tenant;
    /** Who is acting: the JWT `sub`, `apikey:<principal>`, or in header mode `x-user-id` (else `anonymous`). */
    principal: string;
    /** The principal's roles (see {@link Role}). */
    roles: Role[];
  }
  interface FastifyContextConfig {
    /** Resolve and require a tenant for this route. */
    tenant?: boolean;
    /** Also accept tenant and token from the query string (EventSource cannot send headers). */
    tenantFromQuery?: boolean;
    /** Roles of which the principal must hold one (403 FORBIDDEN otherwise); `admin` always may. */
    roles?: Role[];
  }
}

interface ApiKeyEntry {
  digest: Buffer;
  tenant: Tenant;
  principal: string;
}

/**
 * Parses `API_KEYS` entries `key:org_id:project_id[:principal]`; only sha256 digests are kept.
 * @throws {Error} for a malformed entry.
 */
export function parseApiKeys(entries: string[]): ApiKeyEntry[] {
  return entries.map((e, i) => {
    const [key, org, project, principal] = e.split(":");
    if (!key || !isTenantToken(org) || !isTenantToken(project))
      throw new Error(`API_KEYS entry ${i + 1} must be key:org_id:project_id[:principal]`);
    return {
      digest: createHash("sha256").update(key).digest(),
      tenant: { org_id: org, project_id: project },
      principal: `apikey:${principal ?? `key${i + 1}`}`,
    };
  });
}

function findApiKey(keys: ApiKeyEntry[], presented: string): ApiKeyEntry | undefined {
  const d = createHash("sha256").update(presented).digest();
  return keys.find((k) => timingSafeEqual(k.digest, d));
}

function first(v: unknown): string | undefined {
  if (Array.isArray(v)) return typeof v[0] === "string" ? v[0] : undefined;
  return typeof v === "string" ? v : undefined;
}

/** Tenant ids named by the request itself (headers, then query when allowed). */
function claimedTenant(req: FastifyRequest, allowQuery: boolean): { org?: string; project?: string } {
  const q = (allowQuery ? req.query : {}) as Record<string, unknown>;
  return {
    org: first(req.headers["x-org-id"]) ?? first(q.org_id),
    project: first(req.headers["x-project-id"]) ?? first(q.project_id),
  };
}

const PRINCIPAL_RE = /^[\x21-\x7e]{1,128}$/;

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

/** Roles from a claim value: an array of names or a space/comma separated string; unknown names are dropped. */
export function rolesOf(v: unknown): Role[] {
  const names = Array.isArray(v) ? v : typeof v === "string" ? v.split(/[\s,]+/) : [];
  return names.filter((n): n is Role => Role.safeParse(n).success);
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

function validTenant(org: string | undefined, project: string | undefined): Tenant {
  if (org === undefined || project === undefined)
    throw new AppError("INVALID_TENANT", "x-org-id and x-project-id are required", [
      ...(org === undefined ? [{ path: "headers.x-org-id", issue: "Required" }] : []),
      ...(project === undefined ? [{ path: "headers.x-project-id", issue: "Required" }] : []),
    ]);
  const details = [
    ...(isTenantToken(org) ? [] : [{ path: "org_id", issue: "must be 1-64 characters of [A-Za-z0-9_-]" }]),
    ...(isTenantToken(project) ? [] : [{ path: "project_id", issue: "must be 1-64 characters of [A-Za-z0-9_-]" }]),
  ];
  if (details.length) throw new AppError("INVALID_TENANT", undefined, details);
  return { org_id: org, project_id: project };
}

/**
 * Authentication and tenancy (CONTRACT.md "Tenancy and authentication") for routes with
 * `config: { tenant: true }`:
 * - header mode: tenant from `x-org-id` / `x-project-id` (or `org_id` / `project_id` query
 *   parameters on routes with `tenantFromQuery`); principal from `x-user-id` (1–128 printable
 *   characters without spaces; `anonymous` when absent) — header mode trusts the network;
 * - JWT mode: `Authorization: Bearer` (or `token` query) verified with HS256; claims `org_id`,
 *   `project_id`, `sub`; tenant headers that disagree → 403 `TENANT_MISMATCH`;
 * - API keys (when configured): `x-api-key` (or `api_key` query) must be valid for the tenant.
 * Errors: 400 `INVALID_TENANT`, 401 `UNAUTHENTICATED`, 403 `TENANT_MISMATCH`.
 */
export const authPlugin = fp(
  async (app: FastifyInstance, opts: { auth: AuthConfig }) => {
    const { auth } = opts;
    const keys = parseApiKeys(auth.API_KEYS);
    if (auth.AUTH_MODE === "jwt") {
      if (!auth.JWT_SECRET) throw new Error("AUTH_MODE=jwt needs JWT_SECRET");
      await app.register(fastifyJwt, {
        secret: auth.JWT_SECRET,
        verify: { algorithms: ["HS256"], ...(auth.JWT_ISSUER ? { allowedIss: auth.JWT_ISSUER } : {}) },
      });
    }
    app.decorateRequest("tenant", null as unknown as Tenant);
    app.decorateRequest("principal", "anonymous");
    app.decorateRequest("roles", null as unknown as Role[]);
    // Authorisation runs after authentication (onRequest) for routes that name roles.
    app.addHook("preHandler", async (req) => {
      const required = req.routeOptions.config?.roles;
      if (required && !hasRole(req.roles ?? [], required))
        throw new AppError("FORBIDDEN", `This needs one of the roles ${required.join(", ")}`, undefined, {
          stage: "auth",
        });
    });

    app.addHook("onRequest", async (req) => {
      const cfg = req.routeOptions.config;
      if (!cfg?.tenant) return;
      const allowQuery = cfg.tenantFromQuery === true;
      const claimed = claimedTenant(req, allowQuery);
      const q = (allowQuery ? req.query : {}) as Record<string, unknown>;

      if (auth.AUTH_MODE === "jwt") {
        const header = first(req.headers.authorization);
        const token = header?.startsWith("Bearer ") ? header.slice(7) : first(q.token);
        if (!token) throw new AppError("UNAUTHENTICATED", "A Bearer token is required");
        let claims: { org_id?: unknown; project_id?: unknown; sub?: unknown };
        try {
          claims = app.jwt.verify(token);
        } catch (cause) {
          throw new AppError("UNAUTHENTICATED", "The token is invalid or expired", undefined, { cause });
        }
        if (!isTenantToken(claims.org_id) || !isTenantToken(claims.project_id) || typeof claims.sub !== "string")
          throw new AppError("UNAUTHENTICATED", "The token lacks valid org_id, project_id and sub claims");
        if (
          (claimed.org !== undefined && claimed.org !== claims.org_id) ||
          (claimed.project !== undefined && claimed.project !== claims.project_id)
        )
          throw new AppError("TENANT_MISMATCH");
        req.tenant = { org_id: claims.org_id, project_id: claims.project_id };
        req.principal = claims.sub;
        req.roles = rolesOf((claims as { roles?: unknown }).roles);
        return;
      }

      const tenant = validTenant(claimed.org, claimed.project);
      if (keys.length > 0) {
        const presented = first(req.headers["x-api-key"]) ?? first(q.api_key);
        const key = presented ? findApiKey(keys, presented) : undefined;
        if (!key) throw new AppError("UNAUTHENTICATED", "A valid x-api-key is required");
        if (key.tenant.org_id !== tenant.org_id || key.tenant.project_id !== tenant.project_id)
          throw new AppError("TENANT_MISMATCH");
        req.tenant = tenant;
        req.principal = key.principal;
        req.roles = ["admin"];
        return;
      }
      req.tenant = tenant;
      req.principal = headerPrincipal(req);
      req.roles = headerRoles(req);
    });
  },
  { name: "nexus-auth" },
);

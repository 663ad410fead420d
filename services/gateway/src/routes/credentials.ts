import { Tenant } from "@nexus/contracts";
import { AppError, createApiKey, issueTicket, listApiKeys, revokeApiKey } from "@nexus/core";
import { type App, Role } from "@nexus/http";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { AUTH_ERRORS, BODY_ERRORS, errorResponses, TENANT_SECURITY } from "../openapi.ts";

/** `200` body of `POST /agent/reports/ticket`. */
export const StreamTicket = z
  .object({
    ticket: z.string().describe("Use once, as `GET /agent/reports/stream?ticket=…`"),
    expires_at: z.string().describe("ISO 8601; at most 60 s after issue"),
  })
  .meta({ id: "StreamTicket" });

const ApiKeyOut = z
  .object({
    id: z.string(),
    principal: z.string(),
    roles: z.array(z.string()),
    tenants: z.array(z.union([Tenant, z.literal("*")])),
    created_by: z.string(),
    created_at: z.string(),
    revoked_at: z.string().nullable(),
  })
  .meta({ id: "ApiKey", description: "An API key's record (never the key itself)." });

const NewApiKey = z
  .object({
    principal: z.string().regex(/^[\x21-\x7e]{1,100}$/, "1-100 printable characters without spaces"),
    roles: z.array(Role).min(1),
    /** Tenants the key covers; `"*"` for every tenant. Default: the requesting tenant only. */
    tenants: z
      .array(z.union([Tenant, z.literal("*")]))
      .min(1)
      .optional(),
  })
  .meta({ id: "NewApiKey" });

const toOut = (r: Awaited<ReturnType<typeof listApiKeys>>[number]) => ({
  ...r,
  created_at: r.created_at.toISOString(),
  revoked_at: r.revoked_at ? r.revoked_at.toISOString() : null,
});

/**
 * Credentials: stream tickets (docs/contract.md "Tenancy" and "Authentication": EventSource cannot send
 * headers, so a browser asks for a one-use ticket instead of putting a token in the URL) and
 * admin-minted API keys (hashed at rest; the key is shown once).
 */
export function credentialRoutes(app: App, deps: GatewayDeps): void {
  app.post(
    "/agent/reports/ticket",
    {
      config: { tenant: true, roles: ["viewer"] },
      schema: {
        tags: ["stream"],
        operationId: "createStreamTicket",
        summary: "A one-use ticket (≤ 60 s) for opening the report stream without a secret in the URL",
        description:
          "Needs any role (viewer). The ticket is bound to the tenant and principal, works once, and an open stream it authorised ends with CREDENTIAL_EXPIRED when the credential behind it expires.",
        security: TENANT_SECURITY,
        response: { 200: StreamTicket, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async (req) => {
      const { ticket, expiresAt } = await issueTicket(
        deps.db,
        {
          tenant: req.tenant,
          principal: req.principal,
          roles: req.roles,
          ...(req.credentialExpiresAt ? { credentialExpiresAt: req.credentialExpiresAt } : {}),
        },
        deps.now(),
      );
      return { ticket, expires_at: expiresAt.toISOString() };
    },
  );

  app.post(
    "/admin/api-keys",
    {
      config: { tenant: true, roles: ["admin"] },
      schema: {
        tags: ["admin"],
        operationId: "createApiKey",
        summary: "Mint an API key (returned once; only its hash is kept)",
        description: 'Needs the admin role. `tenants` defaults to the requesting tenant; `"*"` covers every tenant.',
        security: TENANT_SECURITY,
        body: NewApiKey,
        response: {
          201: ApiKeyOut.extend({ key: z.string().describe("The key (`nxk_…`), shown only here") }).meta({
            id: "ApiKeyCreated",
          }),
          ...errorResponses(...BODY_ERRORS, 503),
        },
      },
    },
    async (req, reply) => {
      const { record, key } = await createApiKey(deps.db, {
        principal: req.body.principal,
        roles: req.body.roles,
        tenants: req.body.tenants ?? [req.tenant],
        createdBy: req.principal,
      });
      return reply.code(201).send({ ...toOut(record), key });
    },
  );

  app.get(
    "/admin/api-keys",
    {
      config: { tenant: true, roles: ["admin"] },
      schema: {
        tags: ["admin"],
        operationId: "listApiKeys",
        summary: "List API keys (no secrets)",
        security: TENANT_SECURITY,
        response: {
          200: z.object({ api_keys: z.array(ApiKeyOut) }).meta({ id: "ApiKeyList" }),
          ...errorResponses(...AUTH_ERRORS, 503),
        },
      },
    },
    async () => ({ api_keys: (await listApiKeys(deps.db)).map(toOut) }),
  );

  app.delete(
    "/admin/api-keys/:id",
    {
      config: { tenant: true, roles: ["admin"] },
      schema: {
        tags: ["admin"],
        operationId: "revokeApiKey",
        summary: "Revoke an API key (takes effect within 30 s everywhere)",
        security: TENANT_SECURITY,
        params: z.object({ id: z.string() }),
        response: { 204: z.null().describe("Revoked"), ...errorResponses(...AUTH_ERRORS, 404, 503) },
      },
    },
    async (req, reply) => {
      if (!(await revokeApiKey(deps.db, req.params.id, deps.now()))) throw new AppError("NOT_FOUND", "No such API key");
      return reply.code(204).send(null);
    },
  );
}

import { ErrorBody, Tenant } from "@nexus/contracts";
import { AppError, createApiKey, issueTicket, listApiKeys, revokeApiKey } from "@nexus/core";
import { type App, Role } from "@nexus/http";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";

/** `200` body of `POST /agent/reports/ticket`. */
export const StreamTicket = z.object({
  ticket: z.string().describe("Use once, as `GET /agent/reports/stream?ticket=…`"),
  expires_at: z.string().describe("ISO 8601; at most 60 s after issue"),
});

const ApiKeyOut = z.object({
  id: z.string(),
  principal: z.string(),
  roles: z.array(z.string()),
  tenants: z.array(z.union([Tenant, z.literal("*")])),
  created_by: z.string(),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
});

const NewApiKey = z.object({
  principal: z.string().regex(/^[\x21-\x7e]{1,100}$/, "1-100 printable characters without spaces"),
  roles: z.array(Role).min(1),
  /** Tenants the key covers; `"*"` for every tenant. Default: the requesting tenant only. */
  tenants: z
    .array(z.union([Tenant, z.literal("*")]))
    .min(1)
    .optional(),
});

const toOut = (r: Awaited<ReturnType<typeof listApiKeys>>[number]) => ({
  ...r,
  created_at: r.created_at.toISOString(),
  revoked_at: r.revoked_at ? r.revoked_at.toISOString() : null,
});

/**
 * Credentials: stream tickets (CONTRACT.md "Tenancy and authentication": EventSource cannot send
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
        summary: "A one-use ticket (≤ 60 s) for opening the report stream without a secret in the URL",
        response: { 200: StreamTicket, 401: ErrorBody, 403: ErrorBody },
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
        summary: "Mint an API key (returned once; only its hash is kept)",
        body: NewApiKey,
        response: { 201: ApiKeyOut.extend({ key: z.string() }), 400: ErrorBody, 403: ErrorBody },
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
        summary: "List API keys (no secrets)",
        response: { 200: z.object({ api_keys: z.array(ApiKeyOut) }) },
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
        summary: "Revoke an API key (takes effect within 30 s everywhere)",
        params: z.object({ id: z.string() }),
        response: { 204: z.null().describe("Revoked"), 404: ErrorBody },
      },
    },
    async (req, reply) => {
      if (!(await revokeApiKey(deps.db, req.params.id, deps.now()))) throw new AppError("NOT_FOUND", "No such API key");
      return reply.code(204).send(null);
    },
  );
}

import { createHash } from "node:crypto";
import {
  CompliancePatch,
  PersonaPatch,
  type PhotoInfo,
  ProfilePatch,
  SettingsAccepted,
  SkinPatch,
} from "@nexus/contracts";
import { AppError, type Database } from "@nexus/core";
import type { App } from "@nexus/http";
import type { FastifyRequest } from "fastify";
import { fileTypeFromBuffer } from "file-type";
import type { Transaction } from "kysely";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { BODY_ERRORS, errorResponses, QUERY_SECURITY, TENANT_SECURITY, WRITE_ERRORS } from "../openapi.ts";
import { applySettings, mergeCompliance, mergePatch, photoInfo } from "../write/settings.ts";

const CorrelationHeader = z.object({ "x-correlation-id": z.string().min(1).max(200).optional() }).passthrough();
const responses = { 202: SettingsAccepted, ...errorResponses(...BODY_ERRORS, ...WRITE_ERRORS) };
const ALLOWED = new Set<PhotoInfo["content_type"]>(["image/png", "image/jpeg", "image/webp"]);

function correlation(req: FastifyRequest): string | undefined {
  const c = req.headers["x-correlation-id"];
  const v = typeof c === "string" ? c : undefined;
  if (v) req.correlationId = v;
  return v;
}

/** The settings endpoints (docs/contract.md "Settings"): each answers 202, confirmed by `settings.updated`. */
export function settingsRoutes(app: App, deps: GatewayDeps): void {
  const opts = <B extends z.ZodType>(body: B, operationId: string, summary: string) => ({
    config: { tenant: true, roles: ["admin" as const] },
    schema: {
      tags: ["settings"],
      operationId,
      summary,
      description:
        "Needs the admin role. Commits the change and its `settings.updated` report (outbox) in one transaction, then publishes the report. A lost publish is relayed later with the same message id.",
      security: TENANT_SECURITY,
      headers: CorrelationHeader,
      body,
      response: responses,
    },
  });
  app.patch(
    "/profile",
    opts(ProfilePatch, "updateProfile", "Change the profile (display name, locale, time zone)"),
    async (req, reply) =>
      reply.code(202).send(await applySettings(deps, req.tenant, "profile", correlation(req), mergePatch(req.body))),
  );
  app.patch(
    "/assistant/persona",
    opts(PersonaPatch, "updatePersona", "Change the assistant persona (name, tone, instructions)"),
    async (req, reply) =>
      reply.code(202).send(await applySettings(deps, req.tenant, "persona", correlation(req), mergePatch(req.body))),
  );
  app.patch(
    "/assistant/skin",
    opts(SkinPatch, "updateSkin", "Change the assistant skin (theme, accent colour)"),
    async (req, reply) =>
      reply.code(202).send(await applySettings(deps, req.tenant, "skin", correlation(req), mergePatch(req.body))),
  );
  app.patch(
    "/compliance/settings",
    opts(
      CompliancePatch,
      "updateCompliance",
      "Change the compliance settings (risk overrides, ask TTL, approvals required, self-approval)",
    ),
    async (req, reply) =>
      reply
        .code(202)
        .send(await applySettings(deps, req.tenant, "compliance", correlation(req), mergeCompliance(req.body))),
  );

  app.post(
    "/profile/photo",
    {
      config: { tenant: true, roles: ["admin"] },
      bodyLimit: deps.config.PHOTO_LIMIT_BYTES + 1024 * 1024,
      schema: {
        tags: ["settings"],
        operationId: "uploadProfilePhoto",
        summary: "Upload the profile photo (multipart/form-data, one PNG, JPEG or WebP image, at most 5 MiB)",
        description:
          "Needs the admin role. The type is judged by the bytes (magic numbers), never the file name or part header: anything else is 415.",
        security: TENANT_SECURITY,
        headers: CorrelationHeader,
        consumes: ["multipart/form-data"],
        response: responses,
      },
    },
    async (req, reply) => {
      const corr = correlation(req);
      if (!req.isMultipart()) throw new AppError("UNSUPPORTED_MEDIA_TYPE", "Send the photo as multipart/form-data");
      const file = await req.file({ limits: { fileSize: deps.config.PHOTO_LIMIT_BYTES, files: 1 } });
      if (!file) throw new AppError("VALIDATION_FAILED", "No file in the form", [{ path: "photo", issue: "Required" }]);
      const bytes = await file.toBuffer();
      if (file.file.truncated) throw new AppError("PAYLOAD_TOO_LARGE", "The photo is larger than 5 MiB");
      // The type comes from the bytes (magic numbers), never from the file name or header.
      const sniffed = await fileTypeFromBuffer(bytes);
      const mime = sniffed?.mime as PhotoInfo["content_type"] | undefined;
      if (!mime || !ALLOWED.has(mime))
        throw new AppError("UNSUPPORTED_MEDIA_TYPE", "The photo must be a PNG, JPEG or WebP image", [
          { path: "photo", issue: `detected ${sniffed?.mime ?? "unknown"} content` },
        ]);
      const sha = createHash("sha256").update(bytes).digest("hex");
      const info = photoInfo(req.tenant, sha, mime, bytes.byteLength);
      const tenant = req.tenant;
      const store = async (trx: Transaction<Database>) => {
        await trx
          .insertInto("profile_photos")
          .values({ org_id: tenant.org_id, project_id: tenant.project_id, sha256: sha, content_type: mime, bytes })
          .onConflict((oc) =>
            oc
              .columns(["org_id", "project_id"])
              .doUpdateSet({ sha256: sha, content_type: mime, bytes, created_at: new Date() }),
          )
          .execute();
      };
      const accepted = await applySettings(deps, tenant, "profile", corr, (cur) => ({ ...cur, photo: info }), store);
      return reply.code(202).send(accepted);
    },
  );

  app.get(
    "/profile/photo",
    {
      config: { tenant: true, tenantFromQuery: true, roles: ["viewer"] },
      schema: {
        tags: ["settings"],
        operationId: "getProfilePhoto",
        summary: "The current profile photo",
        description:
          "Any role. Accepts the tenant and credentials in the query string, so an <img> can load the `url` of the profile's `photo`.",
        security: QUERY_SECURITY,
        response: { 200: z.instanceof(Buffer), ...errorResponses(400, 401, 403, 404, 429, 500, 503) },
      },
    },
    async (req, reply) => {
      const row = await deps.db
        .selectFrom("profile_photos")
        .select(["content_type", "bytes", "sha256"])
        .where("org_id", "=", req.tenant.org_id)
        .where("project_id", "=", req.tenant.project_id)
        .executeTakeFirst();
      if (!row) throw new AppError("NOT_FOUND", "No profile photo");
      return reply
        .header("cache-control", "private, max-age=300")
        .header("etag", `"${row.sha256}"`)
        .type(row.content_type)
        .send(row.bytes);
    },
  );
}

import { createHash } from "node:crypto";
import {
  CompliancePatch,
  ErrorBody,
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
import { applySettings, mergeCompliance, mergePatch, photoInfo } from "../write/settings.ts";

const CorrelationHeader = z.object({ "x-correlation-id": z.string().min(1).max(200).optional() }).passthrough();
const responses = {
  202: SettingsAccepted,
  400: ErrorBody,
  413: ErrorBody,
  415: ErrorBody,
  503: ErrorBody,
  504: ErrorBody,
};
const ALLOWED = new Set<PhotoInfo["content_type"]>(["image/png", "image/jpeg", "image/webp"]);

function correlation(req: FastifyRequest): string | undefined {
  const c = req.headers["x-correlation-id"];
  const v = typeof c === "string" ? c : undefined;
  if (v) req.correlationId = v;
  return v;
}

/** The settings endpoints (CONTRACT.md "Settings"): each answers 202, confirmed by `settings.updated`. */
export function settingsRoutes(app: App, deps: GatewayDeps): void {
  const opts = <B extends z.ZodType>(body: B) => ({
    config: { tenant: true, roles: ["admin" as const] },
    schema: { tags: ["settings"], headers: CorrelationHeader, body, response: responses },
  });
  app.patch("/profile", opts(ProfilePatch), async (req, reply) =>
    reply.code(202).send(await applySettings(deps, req.tenant, "profile", correlation(req), mergePatch(req.body))),
  );
  app.patch("/assistant/persona", opts(PersonaPatch), async (req, reply) =>
    reply.code(202).send(await applySettings(deps, req.tenant, "persona", correlation(req), mergePatch(req.body))),
  );
  app.patch("/assistant/skin", opts(SkinPatch), async (req, reply) =>
    reply.code(202).send(await applySettings(deps, req.tenant, "skin", correlation(req), mergePatch(req.body))),
  );
  app.patch("/compliance/settings", opts(CompliancePatch), async (req, reply) =>
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
        summary: "Upload the profile photo (multipart/form-data, one PNG, JPEG or WebP image, at most 5 MiB)",
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
      schema: { tags: ["settings"], summary: "The current profile photo" },
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

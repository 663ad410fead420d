import {
  AuditExportQuery,
  CorrelationId,
  HistoryPageWire,
  HistoryQuery,
  isTenantToken,
  PurgeResult,
  parseCursor,
  reportEventJson,
  TenantParams,
} from "@nexus/contracts";
import { AppError, type ChainedRow, chainHead, exportChain, GENESIS_HASH, historyPage } from "@nexus/core";
import { type App, hijackReply } from "@nexus/http";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { AUTH_ERRORS, errorResponses, TENANT_SECURITY, WRITE_ERRORS } from "../openapi.ts";
import { purgeTenantEverywhere } from "../write/purge.ts";

const CorrelationHeader = z.object({ "x-correlation-id": CorrelationId.optional() }).passthrough();

/** One NDJSON line of the audit export (`AuditLine` of contracts), the payload embedded as published. */
export function auditLine(t: { org_id: string; project_id: string }, r: ChainedRow): string {
  // The payload is JSON; a publisher that wrote raw line breaks into it would break NDJSON, and
  // the chain hashes the parsed value, so re-serialising it then is harmless.
  const report = /[\r\n]/.test(r.payload) ? JSON.stringify(JSON.parse(r.payload)) : r.payload;
  return `{"report_id":${JSON.stringify(String(r.seq))},"org_id":${JSON.stringify(t.org_id)},"project_id":${JSON.stringify(
    t.project_id,
  )},"ts":${JSON.stringify(r.ts.toISOString())},"type":${JSON.stringify(r.type)},"report":${report},"prev_hash":${JSON.stringify(
    r.prev_hash,
  )},"hash":${JSON.stringify(r.hash)}}\n`;
}

/**
 * The archive's endpoints (docs/archive.md): `GET /agent/reports` (history, viewer),
 * `GET /agent/audit/export` (NDJSON hash chain, admin) and `DELETE
 * /admin/tenants/{org_id}/{project_id}` (erasure, admin).
 */
export function archiveRoutes(app: App, deps: GatewayDeps): void {
  app.get(
    "/agent/reports",
    {
      config: { tenant: true, roles: ["viewer"] },
      schema: {
        tags: ["reports"],
        operationId: "listReportHistory",
        security: TENANT_SECURITY,
        summary:
          "History: archived reports before `before`, newest first, in the envelope of the stream's report events",
        description:
          "Served from the Postgres archive. Reports newer than the archiver's position (normally well under a second behind) are on the stream first and here once archived.",
        querystring: HistoryQuery,
        response: { 200: HistoryPageWire, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async (req) => {
      const before = req.query.before === undefined ? undefined : (parseCursor(req.query.before) ?? undefined);
      const page = await historyPage(deps.db, req.tenant, {
        limit: req.query.limit,
        ...(before !== undefined ? { before } : {}),
      });
      const reports = [];
      for (const r of page.reports) {
        const json = reportEventJson(r.seq, r.payload, req.tenant);
        if (json !== null) reports.push(JSON.parse(json));
      }
      const oldest = page.reports.at(-1);
      return { reports, next_before: page.more && oldest ? String(oldest.seq) : null };
    },
  );

  app.get(
    "/agent/audit/export",
    {
      config: { tenant: true, roles: ["admin"] },
      schema: {
        tags: ["audit"],
        operationId: "exportAuditChain",
        security: TENANT_SECURITY,
        summary: "Audit export: the tenant's archived reports with from <= ts < to and their hash chain, as NDJSON",
        description:
          "One AuditLine per line, oldest first: report_id, org_id, project_id, ts, type, report (as published), prev_hash, hash. " +
          "The header x-nexus-chain-head names the tenant's chain head (`<report_id> <hash>`) when the export began. Check it with `pnpm audit:verify`.",
        querystring: AuditExportQuery,
        produces: ["application/x-ndjson"],
        response: {
          200: z.string().describe("NDJSON: one AuditLine per line, oldest first"),
          ...errorResponses(...AUTH_ERRORS, 503),
        },
      },
    },
    async (req, reply) => {
      const from = new Date(req.query.from);
      const to = new Date(req.query.to);
      if (!(from.getTime() < to.getTime()))
        throw new AppError("VALIDATION_FAILED", "`from` must be before `to`", [
          { path: "querystring.to", issue: "must be after from" },
        ]);
      const tenant = req.tenant;
      const head = await chainHead(deps.db, tenant);
      const rows = exportChain(deps.db, tenant, { from, to });
      // The first page is read before the status line, so a database failure here is still a 503.
      let next = await rows.next();
      req.log.info(
        { org_id: tenant.org_id, project_id: tenant.project_id, principal: req.principal, from, to },
        "audit:export",
      );
      const res = hijackReply(reply);
      res.writeHead(200, {
        "content-type": "application/x-ndjson; charset=utf-8",
        "cache-control": "no-store",
        "x-nexus-chain-head": head ? `${head.last_report_id} ${head.last_hash}` : `0 ${GENESIS_HASH}`,
      });
      try {
        while (!next.done) {
          if (res.destroyed) return;
          if (!res.write(auditLine(tenant, next.value)))
            await new Promise<void>((r) => {
              res.once("drain", r);
              res.once("close", r);
            });
          next = await rows.next();
        }
        res.end();
      } catch (err) {
        // Mid-way: the status line is out; cutting the connection tells the client the file is incomplete.
        req.log.error({ err }, "audit:export-failed");
        res.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    },
  );

  app.delete(
    "/admin/tenants/:org_id/:project_id",
    {
      config: { tenant: true, roles: ["admin"] },
      schema: {
        tags: ["admin"],
        operationId: "purgeTenant",
        security: TENANT_SECURITY,
        summary:
          "Erase a tenant: its reports (JetStream and archive), commands, asks, history, settings; reported as tenant.purged",
        params: TenantParams,
        headers: CorrelationHeader,
        response: { 200: PurgeResult, ...errorResponses(...AUTH_ERRORS, ...WRITE_ERRORS) },
      },
    },
    async (req) => {
      const { org_id, project_id } = req.params;
      if (!isTenantToken(org_id) || !isTenantToken(project_id)) throw new AppError("INVALID_TENANT");
      // The tenant named by the path must be the one the request is authenticated for.
      if (org_id !== req.tenant.org_id || project_id !== req.tenant.project_id) throw new AppError("TENANT_MISMATCH");
      const header = req.headers["x-correlation-id"];
      const corr = typeof header === "string" ? header : undefined;
      if (corr) req.correlationId = corr;
      return purgeTenantEverywhere(deps, req.tenant, req.principal, corr);
    },
  );
}

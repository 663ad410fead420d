import { z } from "zod";
import { ReportEvent, ReportMessage } from "./reports.ts";
import { CURSOR_RE } from "./sse.ts";
import type { Tenant } from "./tenant.ts";

/**
 * Wire shapes of the report archive (docs/archive.md): the history read, the audit export and
 * the tenant purge. The archive is Postgres `agent_report_events`: every report of
 * NEXUS_REPORTS, with the same `report_id` and the exact JSON as published.
 */

/** A report_id in a query string: a decimal JetStream sequence (see `parseCursor`). */
const ReportIdParam = z.string().regex(CURSOR_RE, "must be a report_id (a decimal sequence)");

/** `GET /agent/reports` query: the page of reports strictly before `before` (newest first). */
export const HistoryQuery = z.object({
  /** Only reports with a smaller report_id; absent = from the newest archived report. */
  before: ReportIdParam.optional(),
  /** Page size, 1–500 (default 50). */
  limit: z.coerce.number().int().min(1).max(500).default(50),
});
export type HistoryQuery = z.infer<typeof HistoryQuery>;

/**
 * `200` body of `GET /agent/reports`: archived reports, newest first, in the envelope of the
 * stream's `report` events; `next_before` is the `before` of the next (older) page, `null`
 * when this page reaches the oldest archived report.
 */
export const HistoryPage = z.object({
  reports: z.array(ReportEvent),
  next_before: z.string().nullable(),
});
export type HistoryPage = z.infer<typeof HistoryPage>;

/**
 * How `GET /agent/reports` serialises its page: {@link HistoryPage} with every report passed
 * through as stored (a field a newer publisher added is kept, a report type this build does not
 * know is still served), so the route never fails on a report it cannot type. Clients parse
 * the body with {@link HistoryPage}.
 */
export const HistoryPageWire = z.object({
  // No known keys: every member is passed through in the order it was stored (a ReportEvent).
  reports: z.array(z.looseObject({}).describe("A ReportEvent: the data of the stream's `report` event")),
  next_before: z.string().nullable(),
});

/** `GET /agent/audit/export` query: reports with `from <= ts < to` (ISO 8601), see docs/archive.md. */
export const AuditExportQuery = z.object({
  from: z.iso.datetime({ offset: true }),
  to: z.iso.datetime({ offset: true }),
});
export type AuditExportQuery = z.infer<typeof AuditExportQuery>;

/**
 * One line of the audit export (NDJSON, one JSON object per line, oldest first): an archived
 * report with its place in the tenant's hash chain. `hash` is SHA-256 (hex) of the canonical
 * JSON (RFC 8785) of `{prev_hash, org_id, project_id, report_id, report}`; the first report
 * of a tenant has `prev_hash` = 64 zeros. See `chainHash` in `@nexus/core`.
 */
export const AuditLine = z.object({
  report_id: z.string(),
  org_id: z.string(),
  project_id: z.string(),
  /** The report's own `ts`. */
  ts: z.string(),
  /** `report.type`, for grep. */
  type: z.string(),
  /** The ReportMessage exactly as published (unknown fields kept). */
  report: ReportMessage.passthrough(),
  prev_hash: z.string().regex(/^[0-9a-f]{64}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
export type AuditLine = z.infer<typeof AuditLine>;

/** `200` body of `DELETE /admin/tenants/{org_id}/{project_id}`. */
export const PurgeResult = z.object({
  purged: z.literal(true),
  org_id: z.string(),
  project_id: z.string(),
  /** Every report with a report_id at or below this one was erased (decimal; "0" when none). */
  reports_through: z.string(),
  /** Rows deleted per table and messages purged per stream. */
  counts: z.record(z.string(), z.number().int()),
  /** The `tenant.purged` report that tells every screen (absent when its publish failed; it is retried by the next purge). */
  report_id: z.string().optional(),
  correlation_id: z.string(),
});
export type PurgeResult = z.infer<typeof PurgeResult>;

/** `{org_id, project_id}` path parameters of the admin tenant routes. */
export const TenantParams = z.object({ org_id: z.string(), project_id: z.string() });
export type TenantParams = z.infer<typeof TenantParams>;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The JSON of a `ReportEvent` (the `data` of an SSE `report` event, and one element of a
 * history page) from a stored report: the published JSON passed through as it is (fields a
 * newer publisher added survive) with `report_id: String(seq)` added. The stream and the
 * history build their envelopes with this one function, so a report reads the same everywhere.
 *
 * A stored report that is not a JSON object, or that names another tenant than `tenant` (the
 * subject it was published on), is refused: a report is only ever shown to the tenant of its
 * subject (docs/architecture.md invariant 4).
 *
 * @param seq the report's JetStream sequence (its report_id).
 * @param text the message as published (UTF-8 decoded).
 * @returns the JSON text, or `null` when refused.
 */
export function reportEventJson(seq: number | string, text: string, tenant: Tenant): string | null {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(msg) || !isObject(msg.tenant)) return null;
  if (msg.tenant.org_id !== tenant.org_id || msg.tenant.project_id !== tenant.project_id) return null;
  return JSON.stringify({ ...msg, report_id: String(seq) });
}

/**
 * Whether {@link reportEventJsonFast} may be used for a stored report: `text` is exactly
 * `JSON.stringify` of its own parse `message` (what every publisher of this system sends), that
 * is a non-empty object, and it has no `report_id` member of its own.
 */
export function isCompactReport(text: string, message: Record<string, unknown>): boolean {
  return text.length > 2 && !Object.hasOwn(message, "report_id") && JSON.stringify(message) === text;
}

/**
 * {@link reportEventJson} for a stored report known to be compact ({@link isCompactReport}) and
 * of `tenant` (the archiver checked both when it stored it), without parsing it: the text with
 * `,"report_id":"<seq>"` appended before its closing brace.
 *
 * The same bytes as `reportEventJson`: that is `JSON.stringify({ ...m, report_id })` for
 * `m = JSON.parse(text)`; the spread copies m's own keys in m's own order and appends the new
 * key `report_id` last, and `JSON.stringify` lists members in that order — so the result is
 * `JSON.stringify(m)` (which is `text`) with one member more at the end. `archive.test.ts`
 * checks it on many reports.
 */
export function reportEventJsonFast(seq: number | string, text: string): string {
  return `${text.slice(0, -1)},"report_id":${JSON.stringify(String(seq))}}`;
}

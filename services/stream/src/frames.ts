import {
  type ApiError,
  type ErrorEvent,
  type PingEvent,
  ProgressEvent,
  reportEventJson,
  reportEventJsonFast,
  type SnapshotEvent,
  SSE_RETRY_MS,
  type Tenant,
} from "@nexus/contracts";

/**
 * Server-Sent Events framing for `GET /agent/reports/stream` (docs/contract.md, LOCKED event names).
 *
 * Every `data:` is one line of compact JSON (`JSON.stringify` escapes line breaks inside strings),
 * so a frame never needs multi-line `data:` fields. Only `snapshot` and `report` carry `id:`;
 * `ping`, `error` and `progress` carry none, so they never move the client's Last-Event-ID.
 */

/** The first bytes of every connection: the reconnection delay hint, `retry: 3000`. */
export const RETRY_FRAME = `retry: ${SSE_RETRY_MS}\n\n`;

/** One report ready to be written to any number of connections. */
export interface ReportFrame {
  /** JetStream sequence of the report (its report_id). */
  seq: number;
  /** The whole SSE frame (`event: report`, `id: <seq>`, `data: <ReportEvent JSON>`, blank line). */
  frame: string;
}

const decoder = new TextDecoder();

/**
 * Builds the `report` frame of a stored report message, read from JetStream (bytes) or from
 * the archive (the same message as text): the data is `reportEventJson` of contracts — the
 * payload passed through as published with `report_id: String(seq)` added — so a report's
 * frame is byte for byte the same from either source. A payload that is not a JSON object, or
 * that names another tenant than the subject it was read from, is refused: a report is only
 * ever shown to the tenant of its subject (docs/architecture.md invariant 4).
 *
 * @param seq the message's JetStream sequence.
 * @param data the raw message bytes (UTF-8 JSON `ReportMessage`), or the archived text.
 * @param tenant the tenant whose subject the message was read from.
 * @returns the frame, or `null` when the payload is refused.
 */
export function reportFrame(seq: number, data: Uint8Array | string, tenant: Tenant): ReportFrame | null {
  const json = reportEventJson(seq, typeof data === "string" ? data : decoder.decode(data), tenant);
  return json === null ? null : { seq, frame: `event: report\nid: ${seq}\ndata: ${json}\n\n` };
}

/**
 * The `report` frame of an archived report the archiver found compact and of its row's tenant
 * (`isCompactReport` in contracts): the same bytes as {@link reportFrame}, without parsing
 * (`reportEventJsonFast`).
 */
export function archivedReportFrame(seq: number, text: string): ReportFrame {
  return { seq, frame: `event: report\nid: ${seq}\ndata: ${reportEventJsonFast(seq, text)}\n\n` };
}

/** The `snapshot` frame; its `id:` is the snapshot's report_id. */
export function snapshotFrame(event: SnapshotEvent): string {
  return `event: snapshot\nid: ${event.report_id}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** The `ping` frame (no `id:`). */
export function pingFrame(now: Date): string {
  const data: PingEvent = { ts: now.toISOString() };
  return `event: ping\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The `error` frame (no `id:`): the standard error body without HTTP status, plus `ts`. */
export function errorFrame(error: ApiError, now: Date): string {
  const data: ErrorEvent = { error, ts: now.toISOString() };
  return `event: error\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The `progress` frame (no `id:`) of a live progress message read from the tenant's core NATS
 * subject `nexus.progress.<org>.<project>`. The payload must be a {@link ProgressEvent} naming the
 * tenant of the subject it was read from (invariant 4); anything else is refused.
 * @returns the frame, or `null` when refused.
 */
export function progressFrame(data: Uint8Array, tenant: Tenant): string | null {
  let msg: unknown;
  try {
    msg = JSON.parse(decoder.decode(data));
  } catch {
    return null;
  }
  const r = ProgressEvent.safeParse(msg);
  if (!r.success) return null;
  if (r.data.tenant.org_id !== tenant.org_id || r.data.tenant.project_id !== tenant.project_id) return null;
  return `event: progress\ndata: ${JSON.stringify(r.data)}\n\n`;
}

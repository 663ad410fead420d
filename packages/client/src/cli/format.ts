import type { ReportEvent, SnapshotEvent } from "@nexus/contracts";
import type { DeadLetterSummary } from "../wire.ts";

/** `"5b2f6c1e-8f0a-…"` → `"5b2f6c1e"`: enough to tell commands apart on a terminal. */
function short(id: string | undefined): string {
  if (!id) return "-";
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

function time(ts: string): string {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toISOString().slice(11, 19);
}

/** One line for a snapshot: its id and a summary of autopilot, worklog and asks. */
export function prettySnapshot(s: SnapshotEvent): string {
  const open = s.snapshot.asks.filter((a) => (a.status ?? "open") === "open").length;
  return `snapshot #${s.report_id}  ${s.snapshot.autopilot.status}, ${s.snapshot.worklog.length} in worklog, ${open} open ask(s)`;
}

/** One line for a report: id, time, type, status, title and the causality ids. */
export function prettyReport(r: ReportEvent): string {
  const rep = r.report;
  const extra =
    rep.type === "command.failed" || rep.type === "ask.execution_failed"
      ? `  ${rep.error.code}: ${rep.error.message}`
      : rep.type === "ask.created"
        ? `  ask=${rep.ask.ask_id} ${rep.ask.risk_level}`
        : "";
  const c = r.causality;
  return [
    `report #${r.report_id}`,
    time(r.ts),
    rep.type.padEnd(20),
    rep.status.padEnd(16),
    JSON.stringify(rep.title),
    `cmd=${short(c.command_id)}${c.ask_id ? ` ask=${short(c.ask_id)}` : ""} corr=${short(c.correlation_id)}${extra}`,
  ].join("  ");
}

/** A fixed-width table of dead letters (newest first, as listed). */
export function deadLetterTable(rows: DeadLetterSummary[]): string {
  const head = ["ID", "TS", "REASON", "CODE", "DELIVERIES", "SUBJECT", "ERROR"];
  const body = rows.map((d) => [
    d.id,
    d.ts,
    d.reason,
    d.code ?? "-",
    String(d.deliveries),
    d.subject,
    d.error.length > 60 ? `${d.error.slice(0, 59)}…` : d.error,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
  return [head, ...body]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

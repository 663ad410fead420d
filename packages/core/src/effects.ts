/**
 * Effects: what a committed state transition implies outside the database. A transition
 * returns them instead of publishing; the caller publishes them after the commit, in order,
 * each with its deterministic `Nats-Msg-Id` (see ids.ts), then acknowledges its input. A
 * redelivered input re-runs the transition, which finds the state already reached and returns
 * the same effects again, so a publish lost to a crash is repeated and a repeat is a no-op.
 */
import type { AgentReport, CaseActionNotification, Causality, Tenant } from "@nexus/contracts";

/** A report to publish on the tenant's report subject. */
export interface PendingReport {
  tenant: Tenant;
  msgId: string;
  report: AgentReport;
  causality: Causality;
  /** ISO 8601 time the fact happened (a row timestamp, so re-deriving gives the same bytes). */
  ts: string;
}

/** A CASE_ACTION notification for other back-end systems (`nexus.notify.<org>.<project>.case_action`). */
export interface PendingNotification {
  tenant: Tenant;
  msgId: string;
  notification: CaseActionNotification;
}

/** A work message to dispatch (e.g. an approved action to the command-worker). */
export interface PendingMessage {
  tenant: Tenant;
  msgId: string;
  subject: string;
  payload: unknown;
  correlationId: string;
  /** Extra headers (e.g. `Nexus-Kind`). */
  headers?: Record<string, string>;
}

/** Everything a transition implies, in publish order: reports, then notifications, then messages. */
export interface Effects {
  reports: PendingReport[];
  notifications: PendingNotification[];
  messages: PendingMessage[];
}

/** No effects. */
export function noEffects(): Effects {
  return { reports: [], notifications: [], messages: [] };
}

/** Concatenates effects, keeping their order. */
export function mergeEffects(...all: (Effects | undefined)[]): Effects {
  const out = noEffects();
  for (const e of all) {
    if (!e) continue;
    out.reports.push(...e.reports);
    out.notifications.push(...e.notifications);
    out.messages.push(...e.messages);
  }
  return out;
}

/** A transition's result: the row it left (or found) and what to publish about it. */
export interface Outcome<Row> {
  row: Row;
  effects: Effects;
}

/**
 * The UTF-8 JSON body of a report message (`ReportMessage`: `{report, causality, tenant, ts,
 * trace_id?}`), the one encoding every publisher and the report outbox use, so that two writers
 * of the same fact send the same bytes (both carry the trace id of the command they act on).
 * @param traceId the W3C trace id (32 hex digits) of the work that produced the report, if known.
 */
export function reportMessageJson(p: PendingReport, traceId?: string): string {
  return JSON.stringify({
    report: p.report,
    causality: p.causality,
    tenant: p.tenant,
    ts: p.ts,
    ...(traceId ? { trace_id: traceId } : {}),
  });
}

import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { type ReportEvent, STREAMS, subjects, type Tenant } from "@nexus/contracts";

/**
 * Every report of a tenant still retained in NEXUS_REPORTS, in order, as `ReportEvent`s
 * (`report_id` = the JetStream sequence), read with an ordered consumer of the tenant's subject.
 */
export async function tenantReports(js: JetStreamClient, t: Tenant): Promise<ReportEvent[]> {
  const c = await js.consumers.get(STREAMS.reports, {
    filter_subjects: subjects.report(t),
    deliver_policy: DeliverPolicy.All,
  });
  const out: ReportEvent[] = [];
  try {
    let pending = (await c.info(true)).num_pending;
    while (pending > 0) {
      let read = 0;
      const it = await c.fetch({ max_messages: Math.min(pending, 256), expires: 2000 });
      for await (const m of it) {
        read++;
        pending = m.info.pending;
        out.push({ ...(m.json() as Omit<ReportEvent, "report_id">), report_id: String(m.seq) });
      }
      if (read === 0) break;
    }
  } finally {
    await c.delete().catch(() => {});
  }
  return out;
}

/** The reports of `reports` about one command (by `causality.command_id`), by type. */
export function reportTypesOf(reports: ReportEvent[], commandId: string): string[] {
  return reports.filter((r) => r.causality.command_id === commandId).map((r) => r.report.type);
}

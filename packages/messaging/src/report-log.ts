import type { JetStreamManager } from "@nats-io/jetstream";
import { STREAMS, subjects, type Tenant } from "@nexus/contracts";

/**
 * The reads of the report stream that the cursor validity rule needs: the narrow interface
 * over JetStream, shared by the stream service (snapshots, cursors, replays, hubs) and the
 * archiver (its proof that nothing was lost before archiving), so the rule is stated once.
 */
export interface ReportLog {
  /**
   * The JetStream sequence of the tenant's newest retained report (`W` of docs/architecture.md
   * invariant 6), or 0 when the tenant has none.
   * @throws nats.js errors when JetStream does not answer.
   */
  lastSeq(tenant: Tenant): Promise<number>;
  /**
   * Whether "every report of the tenant with seq > `cursor`" is still in JetStream, i.e. no
   * such report has been lost to retention. This is the JetStream half of the cursor validity
   * rule (the stream service's `cursor.ts` states the whole rule, archive included):
   *
   * - `cursor > 0` is valid iff the message at sequence `cursor` still exists and its subject is
   *   the tenant's report subject. Retention drops the oldest reports of a subject first, so
   *   while the cursor's own message exists every later report of the tenant exists too. This
   *   covers `cursor == W_last` (the tenant's newest report always exists). A cursor whose
   *   message was dropped (older than retention), one beyond the stream's last sequence (the
   *   stream was reset) and one whose message belongs to another subject (another tenant's
   *   report_id) are all invalid, and indistinguishable from each other by the caller, so
   *   another tenant's cursor leaks nothing (docs/contract.md "Tenancy").
   * - `cursor == 0` ("from the beginning") is valid iff the tenant has never lost a report to
   *   retention: its subject holds fewer than the stream's `max_msgs_per_subject`
   *   (`STREAM_EVENT_KEEP`) messages. A subject at the limit may have lost one, so it is
   *   refused.
   *
   * Because retention only ever removes reports, a `true` answer at time T also holds for every
   * earlier moment; replays and the archiver use that to prove after the fact that they
   * skipped nothing.
   *
   * @throws nats.js errors when JetStream does not answer.
   */
  covers(tenant: Tenant, cursor: number): Promise<boolean>;
  /**
   * The stream's per-subject retention (`max_msgs_per_subject`, i.e. `STREAM_EVENT_KEEP`
   * reports per tenant), or 0 when there is none. A reader that is that far behind its tenant
   * may have had reports evicted before they were delivered: JetStream then moves a consumer
   * on to the next retained message without a sign (the stream hub's gap proof).
   * @throws nats.js errors when JetStream does not answer.
   */
  subjectLimit?(): Promise<number>;
}

/** A {@link ReportLog} over the `NEXUS_REPORTS` stream (uses `STREAM.MSG.GET` and `STREAM.INFO`). */
export function jetStreamReportLog(jsm: JetStreamManager): ReportLog {
  return {
    async lastSeq(tenant) {
      const m = await jsm.streams.getMessage(STREAMS.reports, { last_by_subj: subjects.report(tenant) });
      return m ? m.seq : 0;
    },
    async covers(tenant, cursor) {
      const subject = subjects.report(tenant);
      if (cursor === 0) {
        const info = await jsm.streams.info(STREAMS.reports, { subjects_filter: subject });
        const count = info.state.subjects?.[subject] ?? 0;
        const keep = info.config.max_msgs_per_subject ?? 0;
        return keep <= 0 || count < keep;
      }
      const m = await jsm.streams.getMessage(STREAMS.reports, { seq: cursor });
      return m !== null && m.subject === subject;
    },
    async subjectLimit() {
      const info = await jsm.streams.info(STREAMS.reports);
      return Math.max(0, info.config.max_msgs_per_subject ?? 0);
    },
  };
}

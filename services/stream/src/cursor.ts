import type { JetStreamManager } from "@nats-io/jetstream";
import { STREAMS, subjects, type Tenant } from "@nexus/contracts";

function firstString(v: unknown): string | undefined {
  if (Array.isArray(v)) return typeof v[0] === "string" ? v[0] : undefined;
  return typeof v === "string" ? v : undefined;
}

/**
 * Picks the raw cursor of a request: the `Last-Event-ID` header wins over `?cursor=` because a
 * browser `EventSource` re-sends its original URL (with the original `cursor`) on every
 * reconnect, while the header carries the newest id it saw (CONTRACT.md, LOCKED). An empty
 * value counts as absent (EventSource never sends an empty Last-Event-ID).
 *
 * @param header the `last-event-id` request header as Node parsed it.
 * @param query the `cursor` query parameter as Fastify parsed it (string, array or absent).
 * @returns the raw cursor text, not yet parsed (see `parseCursor` in contracts), or
 *   `undefined` when the request has none.
 */
export function pickCursor(header: string | string[] | undefined, query: unknown): string | undefined {
  const h = firstString(header);
  if (h !== undefined && h !== "") return h;
  const q = firstString(query);
  if (q !== undefined && q !== "") return q;
  return undefined;
}

/**
 * The reads of the report stream that snapshot and cursor handling need: the narrow interface
 * over JetStream, so the rules below are stated once.
 */
export interface ReportLog {
  /**
   * The JetStream sequence of the tenant's newest retained report (`W` of ARCHITECTURE.md
   * invariant 6), or 0 when the tenant has none.
   * @throws nats.js errors when JetStream does not answer.
   */
  lastSeq(tenant: Tenant): Promise<number>;
  /**
   * Whether replaying "every report of the tenant with seq > `cursor`" is still complete, i.e.
   * no such report has been lost to retention. This is the cursor validity rule:
   *
   * - `cursor > 0` is valid iff the message at sequence `cursor` still exists and its subject is
   *   the tenant's report subject. Retention drops the oldest reports of a subject first, so
   *   while the cursor's own message exists every later report of the tenant exists too. This
   *   covers `cursor == W_last` (the tenant's newest report always exists). A cursor whose
   *   message was dropped (older than retention), one beyond the stream's last sequence (the
   *   stream was reset) and one whose message belongs to another subject (another tenant's
   *   report_id) are all invalid, and indistinguishable from each other by the caller, so
   *   another tenant's cursor leaks nothing (CONTRACT.md "Tenancy").
   * - `cursor == 0` ("from the beginning") is valid iff the tenant has never lost a report to
   *   retention: its subject holds fewer than the stream's `max_msgs_per_subject`
   *   (`STREAM_EVENT_KEEP`) messages. A subject at the limit may have lost one, so it is
   *   refused.
   *
   * Because retention only ever removes reports, a `true` answer at time T also holds for every
   * earlier moment; the replay uses that to prove after the fact that it skipped nothing.
   *
   * @throws nats.js errors when JetStream does not answer.
   */
  covers(tenant: Tenant, cursor: number): Promise<boolean>;
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
  };
}

import { type Consumer, DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { STREAMS, type Tenant } from "@nexus/contracts";
import type { StoredReport } from "@nexus/core";
import type { Logger } from "pino";
import type { SseConnection } from "./connection.ts";
import type { ArchiveLog, CursorSource, ReportLog } from "./cursor.ts";
import { archivedReportFrame, type ReportFrame, reportFrame } from "./frames.ts";
import type { HubListener, TenantHub } from "./hub.ts";

/** Dependencies of {@link followFrom}. */
export interface FollowDeps {
  js: JetStreamClient;
  log: ReportLog;
  logger: Logger;
  /** `REPLAY_BATCH_SIZE`: reports per JetStream pull while replaying. */
  batchSize: number;
  /**
   * The hub handoff happens only when the socket backlog and the catch-up copy are each at
   * most this long (half of `SSE_MAX_BUFFERED_BYTES`), so a connection that just went live is
   * not judged slow for bytes it was handed at once; otherwise the replay goes on.
   */
  handoffBytes: number;
  /** Called once per connection that needed a JetStream replay. */
  onReplay?: () => void;
  /** The archive, for cursors older than JetStream's retention (absent: JetStream only). */
  archive?: ArchiveLog;
  /** `ARCHIVE_REPLAY_BATCH_SIZE`: reports per archive read while replaying from the archive. */
  archiveBatchSize?: number;
  /**
   * How long a replay from the archive waits, at its end, for the archiver to store the
   * report JetStream no longer holds (the archiver lags retention), milliseconds; then the
   * connection ends with `replay_gap` (default 2000).
   */
  archiveWaitMs?: number;
  /** Called once per connection that replayed from the archive, and per report it sent from there. */
  onArchiveReplay?: () => void;
  onArchiveReport?: (n: number) => void;
}

/** One archive read of a replay and, for the same position, whether JetStream covers it. */
interface ArchiveStep {
  pos: number;
  covered: Promise<boolean>;
  rows: Promise<StoredReport[] | null>;
}

/** Starts the reads of one archive step; their failures surface when awaited (never unhandled). */
function archiveStep(archive: ArchiveLog, log: ReportLog, tenant: Tenant, pos: number, limit = 1000): ArchiveStep {
  const step = { pos, covered: log.covers(tenant, pos), rows: archive.after(tenant, pos, limit) };
  step.covered.catch(() => {});
  step.rows.catch(() => {});
  return step;
}

/** How long one replay pull waits for messages the hub proves exist, milliseconds. */
const FETCH_EXPIRES_MS = 2000;
/** Poll interval while waiting for the archiver at the end of an archive replay, milliseconds. */
export const ARCHIVE_POLL_MS = 50;

/**
 * Sends `conn` every report of the hub's tenant with seq > `from`, in order, then leaves it fed
 * live by the hub. Returns once the connection is attached to the hub or closed. `source` is
 * where the cursor rule (cursor.ts) found `from` covered.
 *
 * Let `pos` be the highest seq handled for this connection (initially `from`).
 * 1. Handoff: when `pos >= hub.baseSeq` (the hub's ring holds everything after `pos`), wait
 *    until the socket backlog is at most `handoffBytes`, then — in one synchronous step —
 *    re-check `pos >= hub.baseSeq` and that the ring's frames after `pos` total at most
 *    `handoffBytes`, and {@link TenantHub.attach} (copy those frames, register the listener).
 *    JavaScript runs that step without interleaving, so no report is missed or doubled.
 * 2. Archive (only while the cursor came from the archive): if JetStream covers `pos`
 *    (`ReportLog.covers`: the report at `pos` is still retained, so every later one is too),
 *    leave the archive for good and go to 3. Otherwise read the next `archiveBatchSize`
 *    archived reports after `pos` together with their proof (`ArchiveLog.after`: `pos`'s row
 *    still exists and the archive is complete from it, in the same database snapshot, so the
 *    rows read are *all* the tenant's reports in `(pos, last read]`), write them, and go to 1.
 *    A failed proof ends the connection with `replay_gap` before anything after the gap is
 *    written. An empty read means the archive holds nothing after `pos` yet while JetStream
 *    no longer holds `pos`: the archiver lags JetStream's retention for this tenant; wait up
 *    to `archiveWaitMs` for it, then end with `replay_gap` (the client resumes from its last
 *    id; the cursor rule decides again). The read for the next position is started before the
 *    current batch is written (prefetch); it carries its own proof, so this changes nothing above.
 * 3. Otherwise replay from JetStream with a temporary ordered consumer of the tenant's subject
 *    starting at `pos + 1`, one pull of up to `batchSize` at a time, waiting for the socket to
 *    drain between pulls (a replay goes at the client's pace). Before a pull's reports are
 *    written, the replay proves that retention skipped nothing: the report at the pull's
 *    start (`pos`, or the cursor itself) must still be retained ({@link ReportLog.covers});
 *    retention drops the oldest first, so then nothing after it was dropped before the pull
 *    was read. If the proof fails, the connection ends with `replay_gap` before anything after
 *    the gap is written; the client resumes from its last id, which the cursor rule answers
 *    again: from the archive when it holds that id, else CURSOR_EXPIRED + a snapshot. Then go
 *    to 1.
 *
 * The hand-over from 2 to 3 is gap-free because the step-3 proof at the first pull is the
 * step-2 exit condition itself (`covers(pos)`), re-checked after the pull; it is
 * duplicate-free because both sources deliver only seq > `pos`, and the archive's frames are
 * built by the same function from the same published JSON (frames.ts), so they are the same
 * bytes as JetStream's.
 *
 * Per-connection order and uniqueness are also guarded by {@link SseConnection.sendReport}
 * (never a seq at or below the last written).
 */
export async function followFrom(
  deps: FollowDeps,
  conn: SseConnection,
  hub: TenantHub,
  listener: HubListener,
  from: number,
  source: CursorSource = "jetstream",
): Promise<void> {
  const { tenant } = hub;
  let pos = from;
  let consumer: Consumer | undefined;
  let pending = 0;
  let inArchive = source === "archive" && deps.archive !== undefined;
  let next: ArchiveStep | undefined;
  let archiveWaitedMs = 0;
  if (inArchive) deps.onArchiveReplay?.();
  try {
    for (;;) {
      if (conn.closed) return;
      if (hub.stopped) {
        conn.close("hub_failed");
        return;
      }
      if (pos >= hub.baseSeq) {
        if (!(await conn.writable(deps.handoffBytes))) return;
        // From here to attach() nothing awaits: this is the one synchronous switch.
        if (!hub.stopped && pos >= hub.baseSeq && hub.catchUpLength(pos, deps.handoffBytes) <= deps.handoffBytes) {
          hub.attach(listener, pos);
          conn.live = true;
          return;
        }
        if (hub.stopped) continue;
        // The ring moved past `pos`, or holds too much to hand over at once: replay on.
      }
      if (inArchive && deps.archive) {
        // The next read and the hand-over check for `pos` run together, and the read after
        // this one starts before this one is written (prefetch): the database, JetStream and
        // the socket work at the same time.
        const step =
          next && next.pos === pos ? next : archiveStep(deps.archive, deps.log, tenant, pos, deps.archiveBatchSize);
        next = undefined;
        if (await step.covered) {
          inArchive = false; // JetStream holds every report after pos: hand over (step 3)
          continue;
        }
        const rows = await step.rows;
        if (conn.closed) return;
        if (rows === null) {
          conn.close("replay_gap");
          return;
        }
        if (rows.length === 0) {
          if (archiveWaitedMs >= (deps.archiveWaitMs ?? 2000)) {
            conn.close("replay_gap");
            return;
          }
          await new Promise((r) => setTimeout(r, ARCHIVE_POLL_MS));
          archiveWaitedMs += ARCHIVE_POLL_MS;
          continue;
        }
        archiveWaitedMs = 0;
        const last = (rows.at(-1) as StoredReport).seq;
        next = archiveStep(deps.archive, deps.log, tenant, last, deps.archiveBatchSize);
        const frames: ReportFrame[] = [];
        for (const row of rows) {
          pos = row.seq;
          const f = row.compact ? archivedReportFrame(row.seq, row.payload) : reportFrame(row.seq, row.payload, tenant);
          if (f) frames.push(f);
          else deps.logger.error({ subject: hub.subject, seq: row.seq }, "replay:archived-report-refused");
        }
        deps.onArchiveReport?.(conn.sendReports(frames));
        if (!(await conn.writable())) return;
        continue;
      }
      if (!consumer) {
        deps.onReplay?.();
        consumer = await deps.js.consumers.get(STREAMS.reports, {
          filter_subjects: hub.subject, // a string: nats-server 2.9 rejects arrays
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: pos + 1,
        });
        pending = (await consumer.info(true)).num_pending;
      }
      if (!(await conn.writable())) return;

      const batchStart = pos;
      const batch: ReportFrame[] = [];
      let read = 0;
      const iter = await consumer.fetch({
        max_messages: Math.max(1, Math.min(deps.batchSize, pending)),
        expires: FETCH_EXPIRES_MS,
      });
      // Read the whole pull: breaking out early would drop messages nats.js has already
      // received and counted in the ordered consumer's cursor, i.e. a silent gap. A pull asks
      // for at most `pending` (known to exist), so it completes without waiting.
      for await (const m of iter) {
        if (conn.closed) break; // the consumer is deleted below; nothing is reused
        if (m.seq <= pos) continue;
        read++;
        pos = m.seq;
        pending = m.info.pending;
        const f = reportFrame(m.seq, m.data, tenant);
        if (f) batch.push(f);
        else deps.logger.error({ subject: hub.subject, seq: m.seq }, "replay:report-refused");
      }
      if (conn.closed) return;
      if (read === 0) {
        // Nothing within FETCH_EXPIRES_MS although the hub holds newer reports: they are no
        // longer retained (or the stream was reset). The client resumes from its last id.
        conn.close("replay_gap");
        return;
      }
      if (!(await deps.log.covers(tenant, batchStart))) {
        conn.close("replay_gap");
        return;
      }
      if (conn.closed) return;
      conn.sendReports(batch);
    }
  } catch (err) {
    deps.logger.warn({ err, subject: hub.subject }, "replay:failed");
    conn.close("error");
  } finally {
    if (consumer) await consumer.delete().catch(() => {});
  }
}

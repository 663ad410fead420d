import { type Consumer, DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { STREAMS } from "@nexus/contracts";
import type { Logger } from "pino";
import type { SseConnection } from "./connection.ts";
import type { ReportLog } from "./cursor.ts";
import { type ReportFrame, reportFrame } from "./frames.ts";
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
}

/** How long one replay pull waits for messages the hub proves exist, milliseconds. */
const FETCH_EXPIRES_MS = 2000;

/**
 * Sends `conn` every report of the hub's tenant with seq > `from`, in order, then leaves it fed
 * live by the hub. Returns once the connection is attached to the hub or closed.
 *
 * Let `pos` be the highest seq handled for this connection (initially `from`).
 * 1. Handoff: when `pos >= hub.baseSeq` (the hub's ring holds everything after `pos`), wait
 *    until the socket backlog is at most `handoffBytes`, then — in one synchronous step —
 *    re-check `pos >= hub.baseSeq` and that the ring's frames after `pos` total at most
 *    `handoffBytes`, and {@link TenantHub.attach} (copy those frames, register the listener).
 *    JavaScript runs that step without interleaving, so no report is missed or doubled.
 * 2. Otherwise replay from JetStream with a temporary ordered consumer of the tenant's subject
 *    starting at `pos + 1`, one pull of up to `batchSize` at a time, waiting for the socket to
 *    drain between pulls (a replay goes at the client's pace). Before a pull's reports are
 *    written, the replay proves that retention skipped nothing: the report at the pull's
 *    start (`pos`, or the cursor itself) must still be retained ({@link ReportLog.covers});
 *    retention drops the oldest first, so then nothing after it was dropped before the pull
 *    was read. If the proof fails, the connection ends with `replay_gap` before anything after
 *    the gap is written; the client resumes from its last id and gets CURSOR_EXPIRED + a
 *    snapshot. Then go to 1.
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
): Promise<void> {
  const { tenant } = hub;
  let pos = from;
  let consumer: Consumer | undefined;
  let pending = 0;
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
      conn.res.cork();
      for (const f of batch) conn.sendReport(f);
      conn.res.uncork();
    }
  } catch (err) {
    deps.logger.warn({ err, subject: hub.subject }, "replay:failed");
    conn.close("error");
  } finally {
    if (consumer) await consumer.delete().catch(() => {});
  }
}

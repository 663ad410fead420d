import {
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JsMsg,
} from "@nats-io/jetstream";
import { HEADERS, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { traceStep } from "@nexus/messaging";
import type { Logger } from "pino";
import type { ReportLog } from "./cursor.ts";
import { progressFrame, type ReportFrame, reportFrame } from "./frames.ts";

/**
 * Per-tenant fan-out (docs/architecture.md "Scale-out"): one JetStream read per tenant per
 * instance, shared by every connection of that tenant on this instance.
 *
 * Glossary used below:
 * - seq: a report's JetStream sequence, i.e. its report_id.
 * - coverage: a hub guarantees that every report of its tenant with
 *   `baseSeq < seq <= lastSeq` is in its ring buffer (reports refused by {@link reportFrame}
 *   are simply absent), and that it will hand every later one to its listeners, in order.
 * - progress: live command progress from the core NATS subject `nexus.progress.<org>.<project>`
 *   (one subscription per hub). It has no seq: it never enters the ring, never moves
 *   `baseSeq`/`lastSeq` and takes no part in coverage or the gap proof below; it goes to the
 *   listeners registered at that moment (live connections) and is otherwise dropped.
 */

/** Something fed by a hub, synchronously and in seq order: in practice one SSE connection. */
export interface HubListener {
  /** A report with a seq above everything delivered before. */
  deliver(r: ReportFrame): void;
  /** The hub stopped reading; the listener must end (its client resumes from its last id). */
  fail(): void;
  /** A live `progress` frame (no id; best-effort, may be skipped). */
  progress?(frame: string): void;
  /** A closed listener is not registered (or is dropped). */
  readonly closed: boolean;
}

/**
 * A ring of report frames in increasing seq order, bounded by count and by bytes: pushing
 * evicts the oldest frames until both bounds hold again (the newest frame always stays, even
 * alone above the byte bound), so one tenant's large reports cannot grow a hub's memory past
 * `maxBytes` (docs/architecture.md invariant 10).
 */
export class ReportRing {
  private readonly items: (ReportFrame | undefined)[];
  private head = 0;
  /** Number of frames held. */
  size = 0;
  /** Total length of the frames held (UTF-16 code units, close to bytes for JSON). */
  bytes = 0;
  readonly capacity: number;
  readonly maxBytes: number;

  constructor(capacity: number, maxBytes = Number.POSITIVE_INFINITY) {
    this.capacity = capacity;
    this.maxBytes = maxBytes;
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("capacity must be a positive integer");
    this.items = new Array(capacity);
  }

  /** Appends `f` (its seq must exceed the last one's). @returns the newest frame evicted to make room, if any. */
  push(f: ReportFrame): ReportFrame | undefined {
    let evicted: ReportFrame | undefined;
    while (this.size > 0 && (this.size >= this.capacity || this.bytes + f.frame.length > this.maxBytes))
      evicted = this.shift();
    this.items[(this.head + this.size) % this.capacity] = f;
    this.size++;
    this.bytes += f.frame.length;
    return evicted;
  }

  private shift(): ReportFrame {
    const f = this.items[this.head] as ReportFrame;
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    this.bytes -= f.frame.length;
    return f;
  }

  private at(i: number): ReportFrame {
    return this.items[(this.head + i) % this.capacity] as ReportFrame;
  }

  /** Index of the first frame with `seq > after` (binary search; `size` when none). */
  private firstAfter(after: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.at(mid).seq <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The frames with `seq > after`, oldest first. */
  since(after: number): ReportFrame[] {
    const out: ReportFrame[] = [];
    for (let i = this.firstAfter(after); i < this.size; i++) out.push(this.at(i));
    return out;
  }

  /** Total length of the frames with `seq > after`, counting stops once it exceeds `cap`. */
  lengthSince(after: number, cap = Number.POSITIVE_INFINITY): number {
    let n = 0;
    for (let i = this.firstAfter(after); i < this.size && n <= cap; i++) n += this.at(i).frame.length;
    return n;
  }
}

/** The part of a core NATS connection a hub needs for live progress. */
export interface ProgressSource {
  subscribe(
    subject: string,
    opts: { callback: (err: Error | null, msg: { data: Uint8Array }) => void },
  ): { unsubscribe(): void };
}

/** Dependencies of a hub. */
export interface HubDeps {
  js: JetStreamClient;
  /** Core NATS for live progress; without it a hub forwards no progress. */
  nc?: ProgressSource;
  log: ReportLog;
  logger: Logger;
  /** `HUB_BUFFER_SIZE`: frames kept for listeners that attach slightly behind live. */
  bufferSize: number;
  /** `HUB_BUFFER_BYTES`: the most those frames may take together. */
  bufferBytes?: number;
  /** `HUB_IDLE_MS`: how long a hub without holders keeps reading before it stops. */
  idleMs: number;
  /**
   * `HUB_HEARTBEAT_MS`: the idle heartbeat the reader asks JetStream for (default 1000). A
   * reader that hears nothing — no report, no heartbeat — for three of them is restarted.
   */
  heartbeatMs?: number;
  /**
   * `HUB_PROBE_MS`: how often a hub that received nothing checks whether its tenant has newer
   * reports than it holds (default 5000). Newer reports seen on two probes in a row without
   * progress restart the reader.
   */
  probeMs?: number;
  /** Whether NATS is connected now: a reader is not restarted while it is not (default: always). */
  connected?: () => boolean;
}

const utf8 = new TextDecoder();

/**
 * The `reports_through` of a `tenant.purged` report (the report_id up to which the purge erased
 * the tenant), or `undefined` for any other report or a malformed one. Parses the message, so
 * it is asked only of frames that need the gap proof.
 */
function purgedThrough(data: Uint8Array): number | undefined {
  try {
    const m = JSON.parse(utf8.decode(data)) as { report?: { type?: unknown; purge?: { reports_through?: unknown } } };
    if (m?.report?.type !== "tenant.purged") return undefined;
    const n = Number(m.report.purge?.reports_through);
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How a gap proof ended (the `nexus_sse_hub_proofs_total` metric): `ok` — the hub's last report
 * is still retained, the held reports are released; `lost` — it is not, the hub fails;
 * `unanswered` — JetStream did not answer, the reader restarts and proves again.
 */
export type ProofOutcome = "ok" | "lost" | "unanswered";

/** Why a hub's reader is restarted (logs and the `nexus_sse_hub_restarts_total` metric). */
export type RestartReason = "reconnect" | "heartbeats_missed" | "stalled" | "lagging" | "consumer_lost";

interface Held {
  seq: number;
  data: Uint8Array;
  /**
   * Needs the gap proof before it is accepted: the first delivery of a (re)created
   * server-side consumer, or one that retention could have overtaken (see the class doc).
   */
  prove: boolean;
}

/**
 * From which share of the per-tenant retention limit a running consumer's delivery needs the
 * gap proof: `pending + 1 >= limit × share` (see {@link TenantHub}; an exact count would allow 1).
 */
export const OVERTAKABLE_SHARE = 0.5;

/** The JetStream read of one hub: one generation of its ordered consumer. */
interface Reader {
  gen: number;
  consumer: Consumer;
  messages: ConsumerMessages;
}

/**
 * One tenant's live tail: an ordered JetStream consumer on the tenant's report subject, a ring
 * of the newest `bufferSize` reports, and the listeners fed from them.
 *
 * Supervision: the reader is restarted — a new ordered consumer at `lastSeq + 1`, the old one
 * deleted — when NATS reconnects (the registry calls {@link restartReader}), when JetStream's
 * idle heartbeats stop (nats.js `heartbeats_missed`, or nothing at all heard for three
 * heartbeats: this also covers a reader whose server-side consumer died with a cluster node),
 * when the consumer is reported deleted or stops, and when the tenant has reports newer than
 * the hub's on two probes in a row without progress. Listeners stay attached meanwhile; the
 * first message of the new consumer is a fresh start and goes through the gap proof below,
 * so a restart can neither skip nor repeat a report. Attempts are retried with backoff (100 ms
 * doubling to 2 s) until one succeeds or the hub stops.
 *
 * Start: read W (the tenant's newest seq), then consume from W+1, so coverage starts as
 * `(W, W]`. A listener that has been sent everything up to L may {@link attach} iff
 * `L >= baseSeq`; older listeners must first replay `(L, baseSeq]` themselves (replay.ts).
 *
 * Gap proof: JetStream moves a consumer on to the next *retained* message without a sign when
 * the one it would deliver is gone. That happens in two cases: a fresh server-side consumer
 * (the ordered consumer recreates it at "last seen + 1" after a reconnect or a missed
 * heartbeat; its first message has `deliverySequence == 1`), and a running consumer that fell
 * so far behind its tenant that per-tenant retention (`max_msgs_per_subject`, read from the
 * stream at every open) evicted reports before they were sent. The second case is only
 * possible when the delivered message and the ones still pending after it are at least that
 * limit: had any report between the last accepted one and this one been evicted, every older
 * one would be gone too (retention drops oldest first), leaving exactly `limit` retained
 * reports of the tenant, all from this one on. JetStream's `pending` is not exact there,
 * though: nats-server keeps it as a running count per consumer, raised after a message is
 * stored (a message delivered in between is not counted yet) and lowered on delivery and
 * eviction, which race (measured at a limit of 10 after a burst of 400: from exact to 7 too
 * many). The first message after a skip sits exactly at the limit, so a count one short would
 * hide the skip. So the hub holds back from half the limit ({@link OVERTAKABLE_SHARE}): such a
 * message, and every fresh start, waits until {@link ReportLog.covers} confirms that the last
 * report the hub had is still retained — then nothing after it was dropped, neither before
 * this message nor before any other that arrived before the proof was asked for (they were
 * delivered earlier, and a skip needs an eviction, which would have taken that last report
 * first), so one proof releases all of them. If not, the hub fails: every listener ends and
 * resumes from its last id, which the cursor rule (cursor.ts) then answers with a replay —
 * from JetStream, or from the archive when retention took the id — or CURSOR_EXPIRED +
 * snapshot. The proof cannot tell a skip from a hub that is exactly at the boundary (its last
 * report just evicted, the next one delivered): that hub fails too, which costs its connections
 * a resume, never a report. (Stream-wide limits — bytes, age — drop the oldest reports of all
 * tenants; a hub would have to trail the whole stream to meet them, which the lag probe ends
 * first.)
 *
 * A tenant purge removes the tenant's reports up to W on purpose and then publishes
 * `tenant.purged` (`report.purge.reports_through` = W). A hub whose last report is at or below
 * W — every hub of a tenant that was quiet before the purge — cannot prove its last report:
 * the purge took it. For such a `tenant.purged` the proof is instead that the tenant has not
 * been at its retention limit since the purge ({@link ReportLog.covers} with cursor 0: fewer
 * than `limit` reports retained; eviction only happens at the limit, and only a purge lowers
 * the count): then every report after W is retained, so none was skipped, and the ones up to W
 * are erased, which `tenant.purged` tells the screens (they reset). Without this the hub would
 * fail and its screens resume into CURSOR_EXPIRED and a snapshot, never seeing the
 * `tenant.purged` every screen must get (docs/contract.md).
 */
export class TenantHub {
  readonly subject: string;
  /** Coverage lower bound (exclusive); advances when the ring evicts. */
  baseSeq: number;
  /** Highest seq accepted from the consumer. */
  lastSeq: number;
  stopped = false;
  private readonly ring: ReportRing;

  /** Bytes of report frames held in this hub's ring (at most `HUB_BUFFER_BYTES`). */
  get bufferedBytes(): number {
    return this.ring.bytes;
  }
  private readonly listeners = new Set<HubListener>();
  private holders = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private reader: Reader | undefined;
  private gen = 0;
  private held: Held[] = [];
  private verifying = false;
  private progressSub: { unsubscribe(): void } | undefined;
  private restarting = false;
  /** Resolves the backoff wait of a restart in progress (a reconnect retries at once). */
  private kick: (() => void) | undefined;
  /** When the reader last showed life: a report or a heartbeat (ms since the epoch). */
  private lastLife = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  /** The probe's state: lastSeq at the previous probe, and whether newer reports existed then. */
  private probed = { seq: -1, behind: false, at: 0 };
  /** Reader restarts, for metrics and tests. */
  restarts = 0;
  /** The stream's per-tenant retention when the reader last opened (0 = none, or unknown). */
  private subjectLimit = 0;
  /** Set by the registry: called once when the hub stops for any reason. */
  onStopped: (() => void) | undefined;

  readonly tenant: Tenant;
  private readonly deps: HubDeps;

  private constructor(tenant: Tenant, deps: HubDeps, start: number) {
    this.tenant = tenant;
    this.deps = deps;
    this.subject = subjects.report(tenant);
    this.baseSeq = start;
    this.lastSeq = start;
    this.ring = new ReportRing(deps.bufferSize, deps.bufferBytes);
  }

  /**
   * Creates a hub and starts its consumer.
   * @throws nats.js errors when JetStream does not answer (the hub is not created).
   */
  static async start(tenant: Tenant, deps: HubDeps): Promise<TenantHub> {
    const w = await deps.log.lastSeq(tenant);
    const hub = new TenantHub(tenant, deps, w);
    await hub.open();
    hub.startWatchdog();
    // Live progress: one core subscription per hub; best-effort, so a failure to subscribe is
    // logged and the hub runs without it (core subscriptions survive reconnects by themselves).
    try {
      hub.progressSub = deps.nc?.subscribe(subjects.progress(tenant), {
        callback: (err, msg) => {
          if (!err) hub.onProgress(msg.data);
        },
      });
    } catch (err) {
      deps.logger.warn({ err, subject: hub.subject }, "hub:progress-subscribe-failed");
    }
    deps.logger.debug({ subject: hub.subject, from: w + 1 }, "hub:started");
    return hub;
  }

  private get heartbeatMs(): number {
    return this.deps.heartbeatMs ?? 1000;
  }

  /**
   * Opens a new generation of the reader at `lastSeq + 1`.
   * @throws nats.js errors when JetStream does not answer (nothing is left open).
   */
  private async open(): Promise<void> {
    const gen = ++this.gen;
    this.held = [];
    this.verifying = false;
    if (this.deps.log.subjectLimit) this.subjectLimit = await this.deps.log.subjectLimit();
    const consumer = await this.deps.js.consumers.get(STREAMS.reports, {
      // a single string: nats-server 2.9 rejects `filter_subjects` arrays
      filter_subjects: this.subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.lastSeq + 1,
    });
    let messages: ConsumerMessages;
    try {
      messages = await consumer.consume({
        max_messages: 256,
        // Pulls expire after 5 s; while idle JetStream sends a heartbeat every heartbeatMs.
        expires: Math.max(5000, this.heartbeatMs * 2),
        idle_heartbeat: this.heartbeatMs,
        callback: (m) => {
          if (gen !== this.gen) return;
          this.lastLife = Date.now();
          this.onMessage(m, gen);
        },
      });
    } catch (err) {
      await consumer.delete().catch(() => {});
      throw err;
    }
    if (this.stopped || gen !== this.gen) {
      void messages.close().catch(() => {});
      void consumer.delete().catch(() => {});
      return;
    }
    this.reader = { gen, consumer, messages };
    this.lastLife = Date.now();
    void (async () => {
      for await (const st of messages.status()) {
        if (gen !== this.gen) return;
        if (st.type === "heartbeat") this.lastLife = Date.now();
        else if (st.type === "heartbeats_missed") this.restartReader("heartbeats_missed");
        else if (st.type === "consumer_deleted" || st.type === "consumer_not_found")
          this.restartReader("consumer_lost");
      }
    })().catch(() => {});
    void messages.closed().then((err) => {
      if (gen !== this.gen || this.stopped) return;
      this.deps.logger.warn({ subject: this.subject, err }, "hub:reader-stopped");
      this.restartReader("consumer_lost");
    });
  }

  /** Checks the reader every heartbeat (see the class doc). */
  private startWatchdog(): void {
    this.watchdog = setInterval(() => {
      if (this.stopped || this.restarting) return;
      if (this.deps.connected && !this.deps.connected()) return;
      const now = Date.now();
      if (now - this.lastLife > 3 * this.heartbeatMs) {
        this.restartReader("stalled");
        return;
      }
      if (now - this.probed.at >= (this.deps.probeMs ?? 5000)) {
        this.probed.at = now;
        void this.probe();
      }
    }, this.heartbeatMs);
    this.watchdog.unref();
  }

  /** One lag probe: are there reports after lastSeq that the reader has not delivered? */
  private async probe(): Promise<void> {
    const seq = this.lastSeq;
    if (seq !== this.probed.seq || this.held.length > 0) {
      this.probed.seq = seq;
      this.probed.behind = false;
      return;
    }
    let newest: number;
    try {
      newest = await this.deps.log.lastSeq(this.tenant);
    } catch {
      return;
    }
    if (this.stopped || this.lastSeq !== seq) return;
    if (newest > seq) {
      if (this.probed.behind) this.restartReader("lagging");
      else this.probed.behind = true;
    } else this.probed.behind = false;
  }

  /**
   * Restarts the reader at `lastSeq + 1` (see the class doc). A call while a restart is in
   * progress makes it retry at once instead of after its backoff.
   */
  restartReader(reason: RestartReason): void {
    if (this.stopped) return;
    if (this.restarting) {
      this.kick?.();
      return;
    }
    this.restarting = true;
    this.restarts++;
    this.deps.logger.warn({ subject: this.subject, reason, from: this.lastSeq + 1 }, "hub:reader-restart");
    this.onRestart?.(reason);
    const old = this.reader;
    this.reader = undefined;
    this.gen++; // messages of the old generation are ignored from here on
    this.held = [];
    this.verifying = false;
    if (old) {
      void old.messages.close().catch(() => {});
      void old.consumer.delete().catch(() => {});
    }
    void (async () => {
      for (let attempt = 0; !this.stopped; attempt++) {
        try {
          await this.open();
          this.deps.logger.info({ subject: this.subject, attempts: attempt + 1 }, "hub:reader-restarted");
          break;
        } catch (err) {
          this.deps.logger.debug({ err, subject: this.subject }, "hub:reader-restart-failed");
          await new Promise<void>((r) => {
            const t = setTimeout(r, Math.min(2000, 100 * 2 ** attempt));
            this.kick = () => {
              clearTimeout(t);
              r();
            };
          });
          this.kick = undefined;
        }
      }
      this.restarting = false;
      this.lastLife = Date.now();
      this.probed = { seq: -1, behind: false, at: Date.now() };
    })();
  }

  /** Set by the registry: called on every reader restart (metrics). */
  onRestart: ((reason: RestartReason) => void) | undefined;

  /** Set by the registry: called when a gap proof ends (metrics). */
  onProof: ((outcome: ProofOutcome) => void) | undefined;

  /** Number of registered listeners. */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Marks one more user (a connection being set up or attached); cancels a pending idle stop. */
  hold(): void {
    this.holders++;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Releases a {@link hold}; the last release schedules a stop after `idleMs`. */
  unhold(): void {
    this.holders = Math.max(0, this.holders - 1);
    if (this.holders > 0 || this.stopped) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.holders === 0) void this.stop();
    }, this.deps.idleMs);
  }

  /**
   * Attaches a listener that has been sent every report up to `after`, in one synchronous
   * step: first the ring's frames with `seq > after`, then registration, so nothing arriving
   * in between can be missed or doubled (JavaScript runs this without interleaving).
   * @returns false (nothing done) when the hub stopped or `after < baseSeq` (the listener
   *   must replay up to `baseSeq` first).
   */
  attach(listener: HubListener, after: number): boolean {
    if (this.stopped || after < this.baseSeq) return false;
    for (const f of this.ring.since(after)) {
      if (listener.closed) return true;
      listener.deliver(f);
    }
    if (!listener.closed) this.listeners.add(listener);
    return true;
  }

  /**
   * Length of the frames {@link attach} would copy for `after` (UTF-16 code units, close to
   * bytes for JSON), counting stops once it exceeds `cap`.
   */
  catchUpLength(after: number, cap?: number): number {
    return this.ring.lengthSince(after, cap);
  }

  /** Removes a listener (idempotent). */
  detach(listener: HubListener): void {
    this.listeners.delete(listener);
  }

  private onMessage(m: JsMsg, gen: number): void {
    if (this.stopped) return;
    const overtakable = this.subjectLimit > 0 && m.info.pending + 1 >= this.subjectLimit * OVERTAKABLE_SHARE;
    const held: Held = { seq: m.seq, data: m.data, prove: m.info.deliverySequence === 1 || overtakable };
    // The report's trace ends here: with tracing on, a span (child of the report's publish) for
    // handing the frame to this instance's connections.
    traceStep(
      "deliver nexus.report",
      m.headers?.get(HEADERS.traceparent) || undefined,
      { "messaging.destination.name": m.subject, "nexus.report_id": m.seq, "nexus.connections": this.listeners.size },
      () => this.route(held, gen),
    );
  }

  private route(held: Held, gen: number): void {
    if (this.verifying || held.prove) {
      this.held.push(held);
      if (!this.verifying) {
        this.verifying = true;
        void this.verifyHeld(gen);
      }
      return;
    }
    this.accept(held);
  }

  /** Forwards a live progress message to the registered listeners (see "progress" above). */
  private onProgress(data: Uint8Array): void {
    if (this.stopped || this.listeners.size === 0) return;
    const frame = progressFrame(data, this.tenant);
    if (!frame) return;
    for (const l of this.listeners) {
      if (l.closed) continue;
      try {
        l.progress?.(frame);
      } catch (err) {
        this.deps.logger.debug({ err, subject: this.subject }, "hub:progress-listener-failed");
      }
    }
  }

  /** Proves (see class doc) that nothing was skipped before each held frame that needs it, then releases them. */
  private async verifyHeld(gen: number): Promise<void> {
    while (this.held.length > 0) {
      // Everything received so far was delivered before the proof below is asked for.
      const asked = this.held.length;
      let ok = false;
      let answered = false;
      // The position to prove: the hub's last report, or — for a `tenant.purged` that erased
      // it — the purge itself (see the class doc).
      const through = purgedThrough((this.held[0] as Held).data);
      const cursor = through !== undefined && through >= this.lastSeq ? 0 : this.lastSeq;
      try {
        ok = await this.deps.log.covers(this.tenant, cursor);
        answered = true;
      } catch (err) {
        this.deps.logger.warn({ err, subject: this.subject }, "hub:verify-failed");
      }
      if (this.stopped || gen !== this.gen) return;
      this.onProof?.(!answered ? "unanswered" : ok ? "ok" : "lost");
      if (!answered) {
        // JetStream did not answer (a fault in progress): prove it again from a new reader.
        this.restartReader("consumer_lost");
        return;
      }
      if (!ok) {
        this.fail(`report after ${this.lastSeq} may have been lost to retention`);
        return;
      }
      let i = 0;
      while (i < this.held.length && (i < asked || !(this.held[i] as Held).prove)) {
        this.accept(this.held[i] as Held);
        i++;
      }
      this.held.splice(0, i);
    }
    this.verifying = false;
  }

  private accept(h: Held): void {
    if (this.stopped || h.seq <= this.lastSeq) return;
    this.lastSeq = h.seq;
    const f = reportFrame(h.seq, h.data, this.tenant);
    if (!f) {
      this.deps.logger.error({ subject: this.subject, seq: h.seq }, "hub:report-refused");
      return;
    }
    const evicted = this.ring.push(f);
    if (evicted) this.baseSeq = evicted.seq;
    for (const l of this.listeners) {
      if (l.closed) {
        this.listeners.delete(l);
        continue;
      }
      try {
        l.deliver(f);
      } catch (err) {
        // One broken listener must not stop the tenant's other connections.
        this.deps.logger.warn({ err, subject: this.subject }, "hub:listener-failed");
        this.listeners.delete(l);
        l.fail();
      }
    }
  }

  /** Stops reading after a failure and ends every listener. */
  private fail(why: string): void {
    if (this.stopped) return;
    this.deps.logger.warn({ subject: this.subject, why }, "hub:failed");
    const ls = [...this.listeners];
    void this.stop();
    for (const l of ls) l.fail();
  }

  /** Stops the consumer and deletes it on the server (idempotent). Listeners are dropped, not ended. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.idleTimer);
    clearInterval(this.watchdog);
    this.kick?.();
    this.listeners.clear();
    this.held = [];
    try {
      this.progressSub?.unsubscribe();
    } catch {}
    this.gen++;
    this.onStopped?.();
    const r = this.reader;
    this.reader = undefined;
    await r?.messages.close().catch(() => {});
    await r?.consumer.delete().catch(() => {});
    this.deps.logger.debug({ subject: this.subject }, "hub:stopped");
  }
}

/** A hold on a hub; `release()` is idempotent. */
export interface HubLease {
  hub: TenantHub;
  release(): void;
}

/**
 * The hubs of this instance, one per tenant, created on first use and stopped when idle.
 * Concurrent first connections of one tenant share one starting hub.
 */
export class HubRegistry {
  private readonly hubs = new Map<string, Promise<TenantHub>>();
  private readonly live = new Set<TenantHub>();
  private closed = false;

  private readonly deps: HubDeps;
  private readonly onCount: ((n: number) => void) | undefined;
  private readonly onRestart: ((reason: RestartReason) => void) | undefined;
  private readonly onProof: ((outcome: ProofOutcome) => void) | undefined;

  /**
   * @param onCount called with the number of running hubs whenever it changes.
   * @param onRestart called on every reader restart of any hub.
   * @param onProof called whenever a gap proof of any hub ends.
   */
  constructor(
    deps: HubDeps,
    onCount?: (n: number) => void,
    onRestart?: (reason: RestartReason) => void,
    onProof?: (outcome: ProofOutcome) => void,
  ) {
    this.deps = deps;
    this.onCount = onCount;
    this.onRestart = onRestart;
    this.onProof = onProof;
  }

  /**
   * NATS reconnected: every hub restarts its reader (the server may have restarted and lost the
   * ordered consumers, or the client may now talk to another cluster node). The restarts are
   * spread over up to one second when there are many hubs.
   */
  reconnected(): void {
    const hubs = [...this.live];
    const spread = Math.min(1000, hubs.length * 2);
    for (const h of hubs) {
      const t = setTimeout(() => h.restartReader("reconnect"), Math.random() * spread);
      t.unref();
    }
  }

  /** Number of running hubs. */
  get size(): number {
    return this.live.size;
  }

  /** Bytes of report frames held by all running hubs' rings together. */
  bufferedBytes(): number {
    let n = 0;
    for (const h of this.live) n += h.bufferedBytes;
    return n;
  }

  /** The running hub of a tenant, if any (for tests and metrics). */
  find(tenant: Tenant): TenantHub | undefined {
    const subject = subjects.report(tenant);
    for (const h of this.live) if (h.subject === subject) return h;
    return undefined;
  }

  /**
   * Holds the tenant's hub, starting it when needed.
   * @throws nats.js errors when a needed hub cannot start; `Error("shutting down")` after {@link stopAll}.
   */
  async acquire(tenant: Tenant): Promise<HubLease> {
    for (;;) {
      if (this.closed) throw new Error("shutting down");
      const key = subjects.report(tenant);
      let p = this.hubs.get(key);
      if (!p) {
        p = this.startHub(key, tenant);
        this.hubs.set(key, p);
      }
      const hub = await p;
      if (hub.stopped) continue; // stopped between start and now: start another
      hub.hold();
      let released = false;
      return {
        hub,
        release: () => {
          if (released) return;
          released = true;
          hub.unhold();
        },
      };
    }
  }

  private async startHub(key: string, tenant: Tenant): Promise<TenantHub> {
    let hub: TenantHub;
    try {
      hub = await TenantHub.start(tenant, this.deps);
    } catch (err) {
      this.hubs.delete(key);
      throw err;
    }
    const entry = this.hubs.get(key);
    hub.onRestart = this.onRestart;
    hub.onProof = this.onProof;
    hub.onStopped = () => {
      if (this.hubs.get(key) === entry) this.hubs.delete(key);
      this.live.delete(hub);
      this.onCount?.(this.live.size);
    };
    this.live.add(hub);
    this.onCount?.(this.live.size);
    if (this.closed) await hub.stop();
    else hub.unhold(); // no holder yet: arm the idle stop in case nobody holds it
    return hub;
  }

  /** Stops every hub and refuses new ones (shutdown). */
  async stopAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.hubs.values()].map((p) => p.then((h) => h.stop()).catch(() => {})));
    await Promise.all([...this.live].map((h) => h.stop()));
  }
}

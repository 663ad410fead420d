/**
 * The archiver: copies every report of NEXUS_REPORTS into `agent_report_events` exactly once,
 * chained per tenant in report_id order (docs/archive.md "The archiver").
 *
 * Terms (the same as `@nexus/core` archive/append.ts):
 * - batch: the messages taken at once from the durable consumer `archiver` (at most
 *   `ARCHIVER_BATCH_SIZE`), archived in one Postgres transaction, then acknowledged.
 * - ack floor F: the consumer's `ack_floor.stream_seq` — every message at or below it was
 *   acknowledged, and the archiver acknowledges only after its transaction committed (or for a
 *   report it refuses, or one already archived or erased).
 * - chain bound B: F extended through the batch while the batch holds every sequence
 *   `F+1, F+2, …` — so every report at or below B is stored already or in the batch.
 * - proof: per tenant of the batch, that no report of it after its chain head h was lost to
 *   retention before anyone received it: the cursor validity rule `covers(tenant, h)`, asked
 *   *after* the batch was read — the report at h is still in JetStream, so every later report
 *   of the tenant was still there when the consumer passed it, hence was delivered.
 * - run: consecutive batches of this process with no hole between or inside them (the next
 *   batch starts at the sequence after the last one archived). Within a run every sequence
 *   came through this process, so none was deleted before delivery: a tenant whose head is
 *   inside the run needs no proof, and the bound B extends from the last batch's, without
 *   reading F. In steady state with one replica a batch costs one confirmed acknowledgement
 *   and one Postgres transaction, nothing else. Any hole, failure or other replica's batch
 *   ends the run; the next batch reads F and asks the proofs again.
 *
 * A batch loop instead of `runWorker()`: runWorker settles each message on its own (one
 * handler call, one transaction, retries and dead letters per message, up to 16 in flight in
 * any order). The archive needs the opposite: a tenant's reports appended in report_id order,
 * many per transaction (a transaction per report caps throughput at a few thousand per
 * second), acknowledged only after the commit, and nothing ever dead-lettered — a report that
 * cannot be archived now is archived later. What runWorker gives beyond that (consumer health
 * from status notifications and probes, bounded shutdown, typed events) is done the same way
 * here.
 *
 * Replicas: any number may run. One replica's batches are contiguous (its previous batch is
 * acknowledged, and the acknowledgement confirmed, before it reads F again), so it chains
 * every report as it inserts it. With several replicas the consumer interleaves their
 * batches: a batch that does not start at F+1 stores its reports unchained, and the next step
 * of any replica chains them once F has passed them (the sweep). Each tenant's chain head row
 * is locked for every write of its rows, so the chain is extended by one transaction at a time.
 *
 * Restarts: a batch killed before its commit left nothing and is redelivered; killed after
 * its commit but before its acknowledgement it is redelivered and skipped (its reports are at
 * or below the heads). NATS restarts: the consumer is durable (file storage) and `consume()`
 * resumes. Postgres outages: the batch is negatively acknowledged with backoff and retried.
 */
import { EventEmitter } from "node:events";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { CONSUMERS, STREAMS, type Tenant } from "@nexus/contracts";
import {
  type ArchivableReport,
  appendReports,
  backoffMs,
  type Database,
  isRefused,
  parseArchivable,
  type RetrySchedule,
  tenantKey,
  tenantsWaitingToChain,
} from "@nexus/core";
import { isNatsTimeout, isNotFound, type ReportLog } from "@nexus/messaging";
import { type Kysely, sql } from "kysely";
import type { Logger } from "pino";

/** Steps between which a test may inject a crash (`FAULT_INJECT_CRASH_AT`). */
export type ArchiverFaultStep = "archiver:before-commit" | "archiver:after-commit" | "archiver:after-ack";

/** Typed lifecycle events (`noun:verb`); logging and metrics subscribe to them. */
export interface ArchiverEventMap {
  /** A batch committed and was acknowledged. */
  "batch:archived": [
    {
      messages: number;
      inserted: number;
      chained: number;
      deferred: number;
      skipped: number;
      refused: number;
      /** The highest stream sequence in the batch. */
      lastSeq: number;
      ms: number;
    },
  ];
  /** A batch failed (Postgres or NATS); its messages were negatively acknowledged for a retry after `retryMs`. */
  "batch:failed": [{ messages: number; attempt: number; retryMs: number; err: unknown }];
  /** Rows stored unchained by an earlier batch were chained. */
  "chain:swept": [{ tenants: number; chained: number }];
  /** A message of NEXUS_REPORTS is not a report of its subject's tenant: acknowledged, not archived. */
  "report:refused": [{ seq: number; subject: string; reason: string }];
  /** A tenant's coverage restarted: a report may have been lost to retention before it was archived. */
  "coverage:reset": [{ tenant: Tenant }];
  "consumer:unhealthy": [{ reason: string }];
  "consumer:healthy": [Record<string, never>];
  "archiver:stopped": [{ naked: number }];
}

/** The emitter of {@link ArchiverEventMap}. */
export type ArchiverEvents = EventEmitter<ArchiverEventMap>;

/** Dependencies of {@link startArchiver}. */
export interface ArchiverDeps {
  js: JetStreamClient;
  db: Kysely<Database>;
  /** JetStream reads of the cursor validity rule (`jetStreamReportLog`), for the proofs. */
  log: ReportLog;
  logger: Logger;
  /** `ARCHIVER_BATCH_SIZE`. */
  batchSize: number;
  /**
   * `ARCHIVER_LINGER_MS`: once a report is waiting, how long to wait for more before archiving a
   * batch smaller than `batchSize` (default 100 in the service's configuration, 20 here). Under a steady trickle this turns many tiny
   * transactions into a few larger ones, at the price of that much archive lag.
   */
  lingerMs?: number;
  /** Backoff after a failed batch. */
  retry: RetrySchedule;
  now?: () => Date;
  events?: ArchiverEvents;
  /** Fault injection (tests and drills). */
  faults?: (step: ArchiverFaultStep) => void | Promise<void>;
}

/** Health of the archiver's consumer, for `/ready`. */
export interface ArchiverHealth {
  ok: boolean;
  /** `consumer_missing`, `stream_missing`, `heartbeats_missed`, `jetstream_unreachable`, `stopped`. */
  reason?: string;
  since: string;
}

/** A running archiver. */
export interface Archiver {
  readonly events: ArchiverEvents;
  health(): ArchiverHealth;
  /** The highest stream sequence this process archived (committed and acknowledged), 0 before the first. */
  lastArchivedSeq(): number;
  /**
   * Graceful stop (docs/architecture.md invariant 8): stops pulling, lets the batch in progress
   * finish for up to `graceMs`, and negatively acknowledges what was pulled but not archived,
   * so another replica takes it at once.
   */
  stop(graceMs: number): Promise<void>;
}

/** Proofs run at once per batch at most (one JetStream request each). */
const PROOF_CONCURRENCY = 64;
/** How often rows left unchained (other replicas, redeliveries) are looked for, idle or not, ms. */
const IDLE_SWEEP_MS = 500;

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The chain bound B of a batch (see module doc): the ack floor F, extended through `seqs`
 * (sorted, unique) while they continue it without a hole.
 */
export function chainBound(ackFloor: number, seqs: readonly number[]): number {
  let b = ackFloor;
  for (const s of seqs) {
    if (s <= b) continue;
    if (s !== b + 1) break;
    b = s;
  }
  return b;
}

/**
 * Starts archiving. Resolves once the consumer is bound.
 * @throws nats.js errors when the durable consumer `archiver` is missing (provision first: it
 *   is never created here).
 */
export async function startArchiver(d: ArchiverDeps): Promise<Archiver> {
  const events = d.events ?? new EventEmitter<ArchiverEventMap>();
  const now = d.now ?? (() => new Date());
  const consumer: Consumer = await d.js.consumers.get(STREAMS.reports, CONSUMERS.archiver);
  await consumer.info(); // fail fast when it does not exist
  const messages: ConsumerMessages = await consumer.consume({ max_messages: Math.max(100, d.batchSize * 2) });
  const queue: JsMsg[] = [];
  let wake: (() => void) | undefined;
  let stopping = false;
  let lastArchived = 0;
  let health: ArchiverHealth = { ok: true, since: new Date().toISOString() };

  const setHealth = (ok: boolean, reason?: string) => {
    if (health.ok === ok && health.reason === reason) return;
    if (health.reason === "stopped") return;
    health = { ok, ...(reason ? { reason } : {}), since: new Date().toISOString() };
    if (ok) events.emit("consumer:healthy", {});
    else events.emit("consumer:unhealthy", { reason: reason ?? "unknown" });
  };

  void (async () => {
    for await (const s of messages.status()) {
      if (s.type === "consumer_deleted" || s.type === "consumer_not_found") setHealth(false, "consumer_missing");
      else if (s.type === "stream_not_found") setHealth(false, "stream_missing");
      else if (s.type === "heartbeats_missed" && s.count >= 2) setHealth(false, "heartbeats_missed");
      else if (s.type === "heartbeat") setHealth(true);
    }
  })().catch(() => {});

  const settle = (f: () => void) => {
    try {
      f();
    } catch (err) {
      d.logger.warn({ err }, "archiver:settle-failed");
    }
  };

  const reader = (async () => {
    for await (const m of messages) {
      if (stopping) {
        settle(() => m.nak());
        continue;
      }
      queue.push(m);
      wake?.();
    }
  })().catch((err) => d.logger.error({ err }, "archiver:reader-failed"));

  /** Resolves on the next message (at once when `queue` has more than `have`), on stop, or after `ms`. */
  const waitForMessages = (ms: number, have = 0) =>
    new Promise<void>((resolve) => {
      if (queue.length > have || stopping) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  /** The consumer's ack floor F (fresh). */
  const ackFloor = async (): Promise<number> => {
    try {
      const info = await consumer.info();
      if (!health.ok && (health.reason === "consumer_missing" || health.reason === "jetstream_unreachable"))
        setHealth(true);
      return info.ack_floor.stream_seq;
    } catch (err) {
      if (isNotFound(err)) setHealth(false, "consumer_missing");
      else if (isNatsTimeout(err)) setHealth(false, "jetstream_unreachable");
      throw err;
    }
  };

  /**
   * What this process knows (module doc, "runs"): every report at or below `archivedThrough`
   * is archived; every stream sequence from `runStart` to `archivedThrough` came to this
   * process in its own batches, without a hole (so none was deleted before delivery);
   * `heads` holds a lower bound of tenants' chain heads (heads only grow); `known` the
   * tenants whose head row exists.
   */
  let archivedThrough: number | undefined;
  let runStart: number | undefined;
  const heads = new Map<string, number>();
  const known = new Set<string>();

  /**
   * Per tenant, the head `h` for which "no report of the tenant after `h` was lost before
   * delivery" holds now: by the run (its head is inside the run, so everything after it came
   * through this process; a tenant never archived has head 0, inside a run only when the run
   * began at sequence 1) or else by the cursor validity rule `covers(tenant, h)`, asked now.
   * Tenants for which neither holds are left out (their coverage restarts when appended to).
   */
  const prove = async (tenants: readonly Tenant[], run: number | undefined): Promise<Map<string, number>> => {
    const proofs = new Map<string, number>();
    const ask: Tenant[] = [];
    for (const t of tenants) {
      const h = heads.get(tenantKey(t));
      if (run !== undefined && h !== undefined && h >= run - 1) proofs.set(tenantKey(t), h);
      else ask.push(t);
    }
    if (ask.length === 0) return proofs;
    const rows = await sql<{ org_id: string; project_id: string; last_report_id: string; purged_through: string }>`
      select org_id, project_id, last_report_id, purged_through from agent_report_chains
      where (org_id, project_id) in (select * from unnest(${ask.map((t) => t.org_id)}::text[],
                                                          ${ask.map((t) => t.project_id)}::text[]))`.execute(d.db);
    const byKey = new Map(rows.rows.map((h) => [`${h.org_id}/${h.project_id}`, h]));
    await mapLimit(ask, PROOF_CONCURRENCY, async (t) => {
      const key = tenantKey(t);
      const h = byKey.get(key);
      const last = Number(h?.last_report_id ?? 0);
      if (h) known.add(key);
      // A tenant with no head row counts as head 0: a run that began at the stream's first
      // sequence (run 1) saw every report ever published, a new tenant's included, so a burst
      // that took its first reports out of JetStream before this batch was proven lost nothing.
      if (run !== undefined && last >= run - 1) {
        proofs.set(key, last);
        return;
      }
      // After a purge JetStream no longer holds the head: "never lost a report since" is asked instead.
      const at = last > Number(h?.purged_through ?? 0) ? last : 0;
      if (await d.log.covers(t, at)) proofs.set(key, at);
    });
    return proofs;
  };

  /** Chains rows that other replicas (or redeliveries) stored unchained, once F has passed them. */
  const sweep = async (): Promise<void> => {
    const waiting = await tenantsWaitingToChain(d.db, Number.MAX_SAFE_INTEGER);
    if (waiting.length === 0) return;
    const floor = await ackFloor();
    const tenants = await tenantsWaitingToChain(d.db, floor);
    if (tenants.length === 0) return;
    const proofs = await prove(tenants, undefined);
    const r = await d.db
      .transaction()
      .execute((trx) =>
        appendReports(trx, { reports: [], chainThrough: floor, alsoChain: tenants, proofs, now: now() }),
      );
    for (const [k, h] of r.heads) heads.set(k, Math.max(heads.get(k) ?? 0, h));
    for (const t of r.coverageResets) events.emit("coverage:reset", { tenant: t });
    if (r.chained > 0) events.emit("chain:swept", { tenants: tenants.length, chained: r.chained });
  };

  let attempt = 0;
  const loop = (async () => {
    let lastSweep = 0;
    while (!stopping) {
      await waitForMessages(IDLE_SWEEP_MS);
      if (stopping) break;
      if (queue.length === 0) {
        if (Date.now() - lastSweep >= IDLE_SWEEP_MS) {
          lastSweep = Date.now();
          await sweep().catch((err) => d.logger.warn({ err }, "archiver:sweep-failed"));
        }
        continue;
      }
      const lingerUntil = Date.now() + (d.lingerMs ?? 20);
      while (queue.length < d.batchSize && !stopping) {
        const left = lingerUntil - Date.now();
        if (left <= 0) break;
        await waitForMessages(left, queue.length);
      }
      const taken = queue.splice(0, d.batchSize);
      const started = Date.now();
      try {
        const bySeq = new Map<number, JsMsg>();
        for (const m of taken) bySeq.set(m.seq, m);
        const seqs = [...bySeq.keys()].sort((a, b) => a - b);
        const reports: ArchivableReport[] = [];
        let refused = 0;
        for (const s of seqs) {
          const m = bySeq.get(s) as JsMsg;
          const r = parseArchivable(m.subject, s, m.data);
          if (isRefused(r)) {
            refused++;
            events.emit("report:refused", { seq: s, subject: m.subject, reason: r.reason });
          } else reports.push(r);
        }
        // The chain bound B (module doc). A batch that goes on where this process's run left off
        // needs no ack floor: everything up to `archivedThrough` is archived. Otherwise F is
        // read — after the batch, then the proofs after F.
        const fresh = seqs.filter((x) => archivedThrough === undefined || x > archivedThrough);
        let base: number;
        let run: number | undefined;
        if (archivedThrough !== undefined && runStart !== undefined && fresh[0] === archivedThrough + 1) {
          base = archivedThrough;
          run = runStart;
        } else {
          base = Math.max(await ackFloor(), archivedThrough ?? 0);
          run = fresh.length > 0 && fresh[0] === base + 1 ? base + 1 : undefined;
        }
        const bound = chainBound(base, seqs);
        const tenants = new Map<string, Tenant>();
        for (const r of reports) tenants.set(tenantKey(r.tenant), r.tenant);
        const proofs = await prove([...tenants.values()], run);
        const headsExist = [...tenants.keys()].every((k) => known.has(k));
        await d.faults?.("archiver:before-commit");
        const r = await d.db
          .transaction()
          .execute((trx) => appendReports(trx, { reports, chainThrough: bound, proofs, now: now(), headsExist }));
        await d.faults?.("archiver:after-commit");
        // What this process knows now: archived through B; the run goes on while batches have no hole.
        archivedThrough = Math.max(archivedThrough ?? 0, bound);
        runStart = run !== undefined && bound === (fresh.at(-1) ?? bound) ? run : undefined;
        for (const [k, h] of r.heads) {
          heads.set(k, Math.max(heads.get(k) ?? 0, h));
          known.add(k);
        }
        // Acknowledge every message taken (duplicates included), confirming the last one, so
        // that the next ack floor read sees them all (JetStream handles one connection's acks in order).
        const last = taken.at(-1) as JsMsg;
        for (const m of taken) if (m !== last) settle(() => m.ack());
        await last.ackAck().catch((err) => d.logger.warn({ err }, "archiver:ack-confirm-failed"));
        await d.faults?.("archiver:after-ack");
        attempt = 0;
        lastArchived = Math.max(lastArchived, seqs.at(-1) ?? 0);
        for (const t of r.coverageResets) events.emit("coverage:reset", { tenant: t });
        events.emit("batch:archived", {
          messages: taken.length,
          inserted: r.inserted,
          chained: r.chained,
          deferred: r.deferred,
          skipped: r.skipped,
          refused,
          lastSeq: seqs.at(-1) ?? 0,
          ms: Date.now() - started,
        });
        // Rows of tenants that have no report in the coming batches would otherwise wait for an idle moment.
        if (r.deferred > 0 || Date.now() - lastSweep >= IDLE_SWEEP_MS) {
          lastSweep = Date.now();
          await sweep().catch((err) => d.logger.warn({ err }, "archiver:sweep-failed"));
        }
      } catch (err) {
        attempt++;
        // Unknown how far the failure got: start over from the consumer's ack floor.
        archivedThrough = undefined;
        runStart = undefined;
        const retryMs = backoffMs(attempt, d.retry);
        for (const m of taken) settle(() => m.nak(retryMs));
        events.emit("batch:failed", { messages: taken.length, attempt, retryMs, err });
        await new Promise((r) => setTimeout(r, retryMs));
      }
    }
  })();

  return {
    events,
    health: () => health,
    lastArchivedSeq: () => lastArchived,
    async stop(graceMs) {
      if (stopping) return;
      stopping = true;
      wake?.();
      await messages.close().catch(() => {});
      await Promise.race([loop, new Promise((r) => setTimeout(r, graceMs))]);
      const left = queue.splice(0);
      for (const m of left) settle(() => m.nak());
      health = { ok: false, reason: "stopped", since: new Date().toISOString() };
      await Promise.race([reader, new Promise((r) => setTimeout(r, 100))]);
      events.emit("archiver:stopped", { naked: left.length });
    },
  };
}

/**
 * `runWorker()`: the one runner both workers are (graphile-worker's runner, on a JetStream
 * durable pull consumer). Terminology, used the same way everywhere:
 *
 * - job: one message of the worker's stream, parsed into its typed form.
 * - attempt: one delivery of a job (1-based; JetStream's delivery count).
 * - maxAttempts: deliveries a job gets before it is given up (default 5): a job that throws on
 *   its `maxAttempts`-th attempt is failed — `onExhausted` records the failure, the message is
 *   dead-lettered and terminated.
 * - retry schedule: the delay before attempt n+1 after attempt n threw, exponential with full
 *   jitter (see {@link RetrySchedule}).
 * - poison: a message that does not parse; dead-lettered at once, never handled.
 * - dead letter: a copy of the message on `nexus.dlq.<org>.<project>.<source>` with why
 *   (reason and failure code), for operators (`pnpm dlq`, the admin API, the nats CLI).
 * - in-progress ack: `+WIP`, sent every third of the ack wait while a job runs, so a long job
 *   is not redelivered to another replica and a crashed one is redelivered after one ack wait
 *   (`CONSUMER_ACK_WAIT_MS`, 10 s by default: a killed worker's jobs run again within 10 s).
 * - outage: a dependency (Postgres, NATS) unreachable; a job failing for that reason waits for
 *   it without spending attempts (see {@link runWorker}).
 *
 * The runner never creates its consumer: a missing consumer is reported (health, events) and
 * waited for, never silently re-created from the start of the stream.
 */
import { EventEmitter } from "node:events";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type DeadLetter, type Disposition, HEADERS, subjects, type Tenant } from "@nexus/contracts";
import { backoffMs, entityMsgId, type RetrySchedule } from "@nexus/core";
import type { Logger } from "pino";
import {
  type DeadLetterTriage,
  dispositionOf,
  HOLD_ALL,
  publishRequeue,
  type RequeueTarget,
  requeueTarget,
} from "./dead-letters.ts";
import { dependencyOutage, isNatsTimeout, isNotFound, type OutageDependency } from "./errors.ts";
import { buildHeaders } from "./publish.ts";
import { traceConsume } from "./tracing.ts";

/** What a job's handler gets besides the job. */
export interface JobContext {
  /** Child logger bound to the job's tenant and ids. */
  logger: Logger;
  /** Aborted when the worker shuts down: stop at the next checkpoint; the runner naks the message. */
  signal: AbortSignal;
  /** This delivery's number, 1-based. */
  attempt: number;
  maxAttempts: number;
  /** Stream sequence of the message. */
  seq: number;
  subject: string;
  /**
   * The W3C traceparent to carry on: the job's CONSUMER span when tracing is on, else the
   * message's own `traceparent` header, if any.
   */
  traceparent: string | undefined;
}

/** A job's parse result. */
export type Parsed<J> =
  | { ok: true; job: J; tenant: Tenant; log: Record<string, string | undefined> }
  | { ok: false; error: string; tenant: Tenant | null };

/** A dead-lettering the handler asks for instead of a retry (the message can never succeed). */
export interface DeadLetterRequest {
  reason: DeadLetter["reason"];
  /** Failure code for triage (an ErrorCode). */
  code: string;
  error: string;
}

/**
 * A job that is not due yet (a delayed requeue): the message goes back to the consumer and
 * comes again after `snoozeMs`; no attempt is counted as failed.
 */
export interface Snooze {
  snoozeMs: number;
}

/**
 * What {@link WorkerSpec.handle} asks for besides "done": dead-letter the message, or put it
 * back for later. `undefined` means done.
 */
export type JobOutcome = DeadLetterRequest | Snooze | undefined;

/** What a worker does: parse a message, handle a job, record a final failure. */
export interface WorkerSpec<J> {
  /** The worker's name (`command-worker`), for logs and dead letters. */
  name: string;
  stream: string;
  /** Durable pull consumer (provisioned beforehand). */
  consumer: string;
  /** Source token of its dead letters: `nexus.dlq.<org>.<project>.<dlqSource>`. */
  dlqSource: "cmd" | "approval";
  /** Parses a message; a failure makes it poison. */
  parse(msg: JsMsg): Parsed<J>;
  /**
   * Does the job. Resolving to nothing (a `Promise<void>`, or `undefined`) means done (the
   * message is acked); resolving to a {@link DeadLetterRequest} dead-letters it without
   * retries; a {@link Snooze} puts it back for later; throwing is a transient failure (retried
   * per the schedule until `maxAttempts`). See {@link JobOutcome}.
   */
  handle(job: J, ctx: JobContext): Promise<JobOutcome> | Promise<void>;
  /**
   * Called once when the last attempt threw, before the message is dead-lettered: record the
   * failure (e.g. `command.failed` with RETRIES_EXHAUSTED). If it throws too (Postgres still
   * down), the message is kept and retried later.
   * @returns the failure code for the dead letter.
   */
  onExhausted?(job: J, err: unknown, ctx: JobContext): Promise<string>;
}

/** Why the consumer is (not) healthy; see {@link Worker.health}. */
export interface ConsumerHealth {
  ok: boolean;
  /**
   * `consumer_missing`, `stream_missing`, `heartbeats_missed`, `jetstream_unreachable`,
   * `stalled` (a pull went silent, or the consumer stopped delivering: the pull is renewed),
   * `pull_stalled` (messages pending, nothing delivered for `stallMs`), `stopped`.
   */
  reason?: string;
  /** ISO 8601 time of the last change. */
  since: string;
}

/**
 * Typed lifecycle events (graphile-worker `WorkerEvents` style: `noun:verb`). Logging and
 * metrics subscribe to them; the job logic emits nothing itself.
 */
export interface WorkerEventMap {
  /** A job's attempt begins. */
  "job:start": [JobEvent & { attempt: number }];
  /** The attempt finished; the message was acked. */
  "job:success": [JobEvent & { attempt: number; ms: number }];
  /**
   * The attempt threw; the job is retried after `delayMs`. `outage` names the unreachable
   * dependency when that was the cause (the attempt is not counted against `maxAttempts`).
   */
  "job:error": [JobEvent & { attempt: number; delayMs: number; err: unknown; ms: number; outage?: OutageDependency }];
  /** The job is not due yet (a delayed requeue); it comes back after `delayMs`. */
  "job:snoozed": [JobEvent & { attempt: number; delayMs: number }];
  /**
   * The job is given up and dead-lettered (attempts spent, or the handler asked for it).
   * `disposition` is the triage of its failure code (see {@link RunWorkerOptions.triage}).
   */
  "job:failed": [JobEvent & { attempt: number; reason: string; code: string; ms?: number; disposition: Disposition }];
  /** A message did not parse; dead-lettered without handling. */
  "job:poison": [JobEvent & { error: string; disposition: Disposition }];
  /** A dead letter's automatic requeue could not be published; it stays held in the dead-letter stream. */
  "dead-letter:requeue-failed": [JobEvent & { dlqSeq: number; err: unknown }];
  /** The consumer became unhealthy (it is missing, or pulls stalled). */
  "consumer:unhealthy": [{ worker: string; reason: string }];
  /** The consumer is delivering again. */
  "consumer:healthy": [{ worker: string }];
  /** A job failed because a dependency is unreachable: jobs wait for it (emitted once per outage). */
  "dependency:down": [{ worker: string; dependency: OutageDependency }];
  /** A job succeeded again after an outage of `ms` milliseconds. */
  "dependency:up": [{ worker: string; dependency: OutageDependency; ms: number }];
  /** Shutdown began: no more pulls; in-flight jobs get `graceMs`. */
  "worker:stopping": [{ worker: string; inFlight: number; graceMs: number }];
  /** Shutdown finished; `aborted` jobs were nak'ed for another replica. */
  "worker:stopped": [{ worker: string; aborted: number }];
}

/**
 * What every job event carries: the worker, the message (subject, stream sequence) and its
 * `context` — tenant (`org_id`, `project_id`), `command_id` / `ask_id`, `correlation_id` and
 * `trace_id`, as far as they are known — so that log lines about a job can always be found.
 */
export interface JobEvent {
  worker: string;
  subject: string;
  seq: number;
  context: Record<string, string>;
}

/** The emitter of {@link WorkerEventMap}. */
export type WorkerEvents = EventEmitter<WorkerEventMap>;

/** A new {@link WorkerEvents}. */
export function createWorkerEvents(): WorkerEvents {
  return new EventEmitter<WorkerEventMap>();
}

/** Options of {@link runWorker}. */
export interface RunWorkerOptions<J> {
  js: JetStreamClient;
  spec: WorkerSpec<J>;
  logger: Logger;
  /** Jobs one process handles at once (default 16). */
  concurrency?: number;
  /** Deliveries per job (default 5). */
  maxAttempts?: number;
  retry?: RetrySchedule;
  /** The consumer's ack wait, ms: in-progress acks go every third of it (default 10000). */
  ackWaitMs?: number;
  /** How often the consumer's info is read (existence, progress, pending counts), ms (default 5000). */
  probeMs?: number;
  /** Idle heartbeat asked of JetStream for each pull, ms (default 1000): three silent ones abandon the pull. */
  heartbeatMs?: number;
  /** Expiry of each pull request, ms (default 5000). */
  pullExpiresMs?: number;
  /** The connection, to pull afresh when it reconnects (recommended). */
  nc?: Pick<NatsConnection, "status" | "isClosed">;
  /** Which errors are dependency outages (default {@link dependencyOutage}). */
  isOutage?: (err: unknown) => OutageDependency | undefined;
  /**
   * Pulls have stalled when messages are pending on the consumer, this process has free
   * slots, and nothing was delivered for this long, ms (default 30000): the worker reports
   * itself unhealthy (`pull_stalled`) until deliveries resume.
   */
  stallMs?: number;
  /** What happens to a dead letter by its failure code (default: every one is held). */
  triage?: DeadLetterTriage;
  /** PubAck timeout of dead letters and automatic requeues, ms (default 5000). */
  publishTimeoutMs?: number;
  events?: WorkerEvents;
  /** The clock (tests). */
  now?: () => Date;
}

/** The worker's durable consumer as last read (`nats consumer info`), for metrics. */
export interface ConsumerStats {
  /** Messages stored but not yet delivered to any worker: the lag. */
  pending: number;
  /** Delivered, not yet acked: being handled or waiting for a retry's backoff. */
  ackPending: number;
  /** Delivered more than once. */
  redelivered: number;
  /** Pull requests waiting on the server. */
  waiting: number;
}

/** A running worker. */
export interface Worker {
  readonly events: WorkerEvents;
  /** Jobs being handled right now. */
  inFlight(): number;
  /** The consumer's health, for `/ready`. */
  health(): ConsumerHealth;
  /** The consumer's counts as last read (every `probeMs`); `undefined` before the first read. */
  consumerStats(): ConsumerStats | undefined;
  /**
   * Graceful stop (docs/architecture.md invariant 8): stops pulling, lets in-flight jobs finish for
   * up to `graceMs`, then aborts the rest and naks them so another replica takes them at once.
   */
  stop(graceMs: number): Promise<void>;
}

/** The defaults of {@link RunWorkerOptions}. */
export const WORKER_DEFAULTS = {
  concurrency: 16,
  maxAttempts: 5,
  retry: { baseMs: 500, maxMs: 30_000 },
  ackWaitMs: 10_000,
  probeMs: 5000,
  stallMs: 30_000,
  heartbeatMs: 1000,
  pullExpiresMs: 5000,
} as const;

/** The {@link DeadLetter} body of `msg`. */
export function deadLetterOf(
  msg: Pick<JsMsg, "data" | "subject" | "info">,
  o: DeadLetterRequest & { disposition?: Disposition; now?: Date },
): DeadLetter {
  return {
    reason: o.reason,
    code: o.code,
    error: o.error,
    stream: msg.info.stream,
    subject: msg.subject,
    stream_seq: msg.info.streamSequence,
    deliveries: msg.info.deliveryCount,
    payload: Buffer.from(msg.data).toString("utf8"),
    ts: (o.now ?? new Date()).toISOString(),
    ...(o.disposition ? { disposition: o.disposition } : {}),
  };
}

/**
 * Parks `msg` on the dead-letter stream with why, with `Nats-Msg-Id`
 * `<org>.<project>.<worker>-<stream_seq>:dlq.<reason>` so a retried dead-lettering is stored once.
 * @returns the dead letter's sequence in NEXUS_DLQ (its id for operators).
 * @throws when JetStream does not acknowledge it (the caller keeps the message).
 */
export async function deadLetter(
  js: Pick<JetStreamClient, "publish">,
  msg: Pick<JsMsg, "data" | "subject" | "info" | "headers">,
  o: {
    worker: string;
    source: "cmd" | "approval";
    tenant: Tenant | null;
    disposition?: Disposition;
    timeoutMs?: number;
    now?: Date;
  } & DeadLetterRequest,
): Promise<number> {
  const letter = deadLetterOf(msg, o);
  const t = o.tenant ?? { org_id: "_unknown", project_id: "_unknown" };
  const id = entityMsgId(t, `${o.worker}-${msg.info.streamSequence}`, `dlq.${o.reason}`);
  const ack = await js.publish(subjects.dlq(o.tenant, o.source), JSON.stringify(letter), {
    msgID: id,
    headers: buildHeaders({
      tenant: t,
      msgId: id,
      correlationId: msg.headers?.get(HEADERS.correlationId) || id,
      traceparent: msg.headers?.get(HEADERS.traceparent) || undefined,
      extra: { "Nexus-Dead-Letter-Code": o.code, ...(o.disposition ? { "Nexus-Disposition": o.disposition } : {}) },
    }),
    ...(o.timeoutMs ? { timeout: o.timeoutMs } : {}),
  });
  return ack.seq;
}

/**
 * Runs a durable pull consumer as a competing consumer (any number of replicas), handling up
 * to `concurrency` jobs at once with the semantics of the module doc.
 *
 * Pulling: one pull request at a time for exactly the free slots (a JetStream fetch with an
 * expiry of `pullExpiresMs` and an idle heartbeat of `heartbeatMs`), so every message this
 * process holds is being handled and kept alive with in-progress acks; none waits unacked in a
 * buffer for its ack wait to run out. A pull that hears nothing — no message, no heartbeat — for
 * three heartbeats is abandoned and a new one sent (this notices a restarted server, a consumer
 * whose leader moved, a dead connection); so is every pull when NATS reconnects.
 *
 * Outages: a job that fails because a dependency is unreachable ({@link dependencyOutage}:
 * Postgres down or frozen, NATS requests timing out) does not spend its attempts: it is nak'ed
 * for another try in 0.5–1.5 s however often that happens, and the worker reports the outage
 * once (`dependency:down`) and its end once (`dependency:up`). So a dependency that comes back is
 * in full use again within about two seconds, and an outage never dead-letters a job.
 *
 * @throws nats.js errors when the consumer cannot be bound at start (missing: provision first).
 */
export async function runWorker<J>(o: RunWorkerOptions<J>): Promise<Worker> {
  const { spec, js, logger } = o;
  const concurrency = o.concurrency ?? WORKER_DEFAULTS.concurrency;
  const maxAttempts = o.maxAttempts ?? WORKER_DEFAULTS.maxAttempts;
  const retry = o.retry ?? WORKER_DEFAULTS.retry;
  const ackWaitMs = o.ackWaitMs ?? WORKER_DEFAULTS.ackWaitMs;
  const stallMs = o.stallMs ?? WORKER_DEFAULTS.stallMs;
  const triage = o.triage ?? HOLD_ALL;
  const publishTimeoutMs = o.publishTimeoutMs ?? 5000;
  const now = o.now ?? (() => new Date());
  const heartbeatMs = o.heartbeatMs ?? WORKER_DEFAULTS.heartbeatMs;
  const pullExpiresMs = Math.max(o.pullExpiresMs ?? WORKER_DEFAULTS.pullExpiresMs, 2 * heartbeatMs);
  const isOutage = o.isOutage ?? dependencyOutage;
  const events = o.events ?? createWorkerEvents();
  const worker = spec.name;

  const consumer: Consumer = await js.consumers.get(spec.stream, spec.consumer);
  const active = new Map<JsMsg, AbortController>();
  let slotFreed: (() => void) | undefined;
  let wake: (() => void) | undefined;
  let stopping = false;
  let health: ConsumerHealth = { ok: true, since: new Date().toISOString() };
  /** The pull in progress, and when it last showed life (a message or a heartbeat). */
  let pull: ConsumerMessages | undefined;
  let lastLife = Date.now();
  let disconnected = false;
  const down = new Map<OutageDependency, number>();

  const setHealth = (ok: boolean, reason?: string) => {
    if (health.ok === ok && health.reason === reason) return;
    health = { ok, ...(reason ? { reason } : {}), since: new Date().toISOString() };
    if (ok) events.emit("consumer:healthy", { worker });
    else events.emit("consumer:unhealthy", { worker, reason: reason ?? "unknown" });
  };

  /**
   * The pull showed life. A delivered message proves every reason wrong; a heartbeat proves the
   * pull alive, but not that the consumer delivers (`pull_stalled` stays until a message comes).
   */
  const alive = (delivered: boolean) => {
    lastLife = Date.now();
    if (health.ok || health.reason === "stopped" || health.reason === "starting") return;
    if (delivered || health.reason !== "pull_stalled") setHealth(true);
  };

  /** Ends the pull in progress: the loop sends a new one at once. */
  const abandonPull = (why: string) => {
    const p = pull;
    if (!p) return;
    pull = undefined;
    logger.debug({ worker, why }, "worker:pull-abandoned");
    void p.close().catch(() => {});
  };

  // Supervision. Every heartbeat: a pull silent for three is abandoned (and the consumer
  // reported stalled). Every probe: the consumer's info notices a deletion, gives the pending
  // counts for metrics, tells a stall (messages pending, free slots, nothing delivered for
  // `stallMs`) from an idle consumer, and renews the pull of a consumer that has messages it
  // does not deliver although this process has free slots and the consumer has room.
  let stats: ConsumerStats | undefined;
  let lastDelivery = Date.now();
  let progressSeen = Date.now();
  let probeAt = Date.now();
  let lag: { delivered: number; behind: boolean } | undefined;
  const probeMs = o.probeMs ?? WORKER_DEFAULTS.probeMs;
  const watchdog = setInterval(
    () => {
      if (stopping) return;
      const connected = !o.nc || (!o.nc.isClosed() && !disconnected);
      if (pull && connected && Date.now() - lastLife > 3 * heartbeatMs) {
        logger.warn({ worker, silent_ms: Date.now() - lastLife }, "worker:pull-stalled");
        setHealth(false, "stalled");
        abandonPull("stalled");
      }
      if (Date.now() - probeAt < probeMs) return;
      probeAt = Date.now();
      consumer
        .info()
        .then((info) => {
          stats = {
            pending: info.num_pending,
            ackPending: info.num_ack_pending,
            redelivered: info.num_redelivered,
            waiting: info.num_waiting,
          };
          const t = Date.now();
          if (info.num_pending === 0 || active.size >= concurrency) progressSeen = t;
          const delivered = info.delivered.consumer_seq;
          const starving =
            info.num_pending > 0 &&
            active.size < concurrency &&
            (info.config.max_ack_pending ?? -1) > info.num_ack_pending &&
            delivered === lag?.delivered;
          const behind = lag?.behind;
          lag = { delivered, behind: starving };
          if (starving && behind) {
            logger.warn({ worker, pending: info.num_pending }, "worker:consumer-lagging");
            setHealth(false, "stalled");
            abandonPull("lagging");
            return;
          }
          if (t - Math.max(progressSeen, lastDelivery) > stallMs) setHealth(false, "pull_stalled");
          else if (
            !health.ok &&
            (health.reason === "consumer_missing" ||
              health.reason === "jetstream_unreachable" ||
              health.reason === "pull_stalled")
          )
            setHealth(true);
        })
        .catch((err) => {
          if (isNotFound(err)) setHealth(false, "consumer_missing");
          else if (isNatsTimeout(err)) setHealth(false, "jetstream_unreachable");
        });
    },
    Math.min(heartbeatMs, probeMs),
  );
  watchdog.unref();

  // A reconnect may follow a server restart or land on another cluster node: pull afresh.
  if (o.nc) {
    const nc = o.nc;
    void (async () => {
      for await (const st of nc.status()) {
        if (st.type === "disconnect") disconnected = true;
        if (st.type === "reconnect") {
          disconnected = false;
          abandonPull("reconnect");
        }
      }
    })().catch(() => {});
  }

  const settle = (what: () => void) => {
    try {
      what();
    } catch (err) {
      logger.warn({ err }, "worker:settle-failed");
    }
  };

  /**
   * Dead-letters `m` with the disposition its failure code gets, and when that is `requeue`,
   * publishes its automatic requeue (not before the triage's delay) while still holding `m`.
   * @throws when the dead letter is not stored (the caller keeps the message).
   */
  const park = async (m: JsMsg, tenant: Tenant | null, r: DeadLetterRequest, base: JobEvent): Promise<Disposition> => {
    const at = now();
    let target: RequeueTarget | undefined;
    try {
      target = requeueTarget(deadLetterOf(m, { ...r, now: at }));
    } catch {
      target = undefined; // not requeueable: held (or an alarm)
    }
    let disposition = dispositionOf(triage, r.code, target?.generation ?? 0);
    if (disposition === "requeue" && !target) disposition = "hold";
    const dlqSeq = await deadLetter(js, m, {
      worker,
      source: spec.dlqSource,
      tenant,
      ...r,
      disposition,
      timeoutMs: publishTimeoutMs,
      now: at,
    });
    if (disposition === "requeue" && target) {
      const generation = target.generation + 1;
      const out = await publishRequeue(js, {
        dlqSeq,
        target,
        requestedBy: "auto",
        now: at,
        notBefore: new Date(at.getTime() + triage.requeueDelayMs * 2 ** (generation - 1)),
        generation,
        correlationId: m.headers?.get(HEADERS.correlationId) || `dlq-${dlqSeq}`,
        ...(m.headers?.has(HEADERS.traceparent) ? { traceparent: m.headers.get(HEADERS.traceparent) } : {}),
        timeoutMs: publishTimeoutMs,
      });
      if (out.kind !== "stored")
        events.emit("dead-letter:requeue-failed", { ...base, dlqSeq, err: "cause" in out ? out.cause : undefined });
    }
    return disposition;
  };

  /** Per stream sequence, the snoozes of a message (see `run`). */
  const snoozes = new Map<number, number>();

  const outage = (dependency: OutageDependency | undefined) => {
    if (dependency) {
      if (!down.has(dependency)) {
        down.set(dependency, Date.now());
        events.emit("dependency:down", { worker, dependency });
      }
      return;
    }
    for (const [d, since] of down) events.emit("dependency:up", { worker, dependency: d, ms: Date.now() - since });
    down.clear();
  };

  const run = async (m: JsMsg) => {
    const ac = new AbortController();
    active.set(m, ac);
    // Deliveries that were snoozes (a requeue not due yet) are not attempts. Counted in this
    // process only: a snooze seen by another replica costs one attempt.
    const attempt = Math.max(1, m.info.deliveryCount - (snoozes.get(m.seq) ?? 0));
    let settled = true; // false while the message comes back (snoozed, retried)
    const started = Date.now();
    lastDelivery = started;
    const keepAlive = setInterval(() => settle(() => m.working()), Math.max(250, Math.floor(ackWaitMs / 3)));
    try {
      await traceConsume(m, async (trace) => {
        const parsed = spec.parse(m);
        // What every log line and event about this message carries: tenant, ids, trace id.
        const context: Record<string, string> = Object.fromEntries(
          Object.entries({
            ...(parsed.ok
              ? parsed.log
              : parsed.tenant
                ? { org_id: parsed.tenant.org_id, project_id: parsed.tenant.project_id }
                : {}),
            trace_id: trace.traceId,
          }).filter((e): e is [string, string] => e[1] !== undefined),
        );
        const base = { worker, subject: m.subject, seq: m.seq, context };
        if (!parsed.ok) {
          const disposition = await park(
            m,
            parsed.tenant,
            { reason: "poison", code: "POISON_MESSAGE", error: parsed.error },
            base,
          );
          // A bare +TERM: nats-server < 2.10.4 ignores "+TERM <reason>" and redelivers; the reason is in the dead letter.
          settle(() => m.term());
          events.emit("job:poison", { ...base, error: parsed.error, disposition });
          return;
        }
        const log = logger.child(context);
        const ctx: JobContext = {
          logger: log,
          signal: ac.signal,
          attempt,
          maxAttempts,
          seq: m.seq,
          subject: m.subject,
          traceparent: trace.traceparent,
        };
        events.emit("job:start", { ...base, attempt });
        try {
          const r = await spec.handle(parsed.job, ctx);
          if (ac.signal.aborted) return; // shutdown: nak'ed by stop()
          outage(undefined);
          if (r && "snoozeMs" in r) {
            // Not due yet (a delayed requeue): back on the consumer after the delay, no attempt spent.
            snoozes.set(m.seq, (snoozes.get(m.seq) ?? 0) + 1);
            settled = false;
            if (snoozes.size > 10_000) snoozes.delete(snoozes.keys().next().value as number);
            settle(() => m.nak(r.snoozeMs));
            events.emit("job:snoozed", { ...base, attempt, delayMs: r.snoozeMs });
            return;
          }
          if (r) {
            const disposition = await park(m, parsed.tenant, r, base);
            settle(() => m.term());
            events.emit("job:failed", { ...base, attempt, reason: r.reason, code: r.code, disposition });
            return;
          }
          settle(() => m.ack());
          events.emit("job:success", { ...base, attempt, ms: Date.now() - started });
        } catch (err) {
          if (ac.signal.aborted) return;
          const dependency = isOutage(err);
          if (dependency) {
            // Not the job's fault: try again soon, without spending an attempt (see above).
            outage(dependency);
            const delayMs = 500 + Math.floor(Math.random() * 1000);
            events.emit("job:error", { ...base, attempt, delayMs, err, ms: Date.now() - started, outage: dependency });
            snoozes.set(m.seq, (snoozes.get(m.seq) ?? 0) + 1);
            settled = false;
            settle(() => m.nak(delayMs));
            return;
          }
          if (attempt >= maxAttempts) {
            try {
              const code = (await spec.onExhausted?.(parsed.job, err, ctx)) ?? "RETRIES_EXHAUSTED";
              const disposition = await park(
                m,
                parsed.tenant,
                {
                  reason: "retries_exhausted",
                  code,
                  error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
                },
                base,
              );
              settle(() => m.term());
              events.emit("job:failed", {
                ...base,
                attempt,
                reason: "retries_exhausted",
                code,
                ms: Date.now() - started,
                disposition,
              });
              return;
            } catch (err2) {
              log.error({ err: err2 }, "job:fail-recording-failed");
            }
          }
          const delayMs = backoffMs(attempt, retry);
          events.emit("job:error", { ...base, attempt, delayMs, err, ms: Date.now() - started });
          settled = false;
          settle(() => m.nak(delayMs));
        }
      });
    } catch (err) {
      // Dead-lettering failed (NATS down): keep the message, try again later.
      logger.error({ err, subject: m.subject, seq: m.seq }, "worker:dead-letter-failed");
      settled = false;
      settle(() => m.nak(backoffMs(attempt, retry)));
    } finally {
      clearInterval(keepAlive);
      active.delete(m);
      if (settled) snoozes.delete(m.seq);
      slotFreed?.();
    }
  };

  const pause = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });

  const loop = (async () => {
    let failures = 0;
    while (!stopping) {
      while (active.size >= concurrency && !stopping) await new Promise<void>((r) => (slotFreed = r));
      if (stopping) break;
      let p: ConsumerMessages;
      try {
        p = await consumer.fetch({
          max_messages: concurrency - active.size,
          expires: pullExpiresMs,
          idle_heartbeat: heartbeatMs,
        });
      } catch (err) {
        logger.warn({ err, worker }, "worker:pull-failed");
        await pause(Math.min(2000, 100 * 2 ** failures++));
        continue;
      }
      pull = p;
      lastLife = Date.now();
      const pulledAt = Date.now();
      let got = 0;
      void (async () => {
        for await (const st of p.status()) {
          if (st.type === "heartbeat") alive(false);
          else if (st.type === "consumer_deleted" || st.type === "consumer_not_found")
            setHealth(false, "consumer_missing");
          else if (st.type === "heartbeats_missed" && st.count >= 2) setHealth(false, "heartbeats_missed");
        }
      })().catch(() => {});
      try {
        for await (const m of p) {
          alive(true);
          got++;
          failures = 0;
          if (stopping) {
            settle(() => m.nak());
            continue;
          }
          void run(m);
        }
      } catch (err) {
        // The pull failed (heartbeats missed, consumer deleted, no responders): pull again.
        if (!stopping) {
          logger.debug({ err, worker }, "worker:pull-ended");
          await pause(Math.min(2000, 100 * 2 ** failures++));
        }
      } finally {
        if (pull === p) pull = undefined;
      }
      // A pull that ended at once with nothing (closed under us): do not spin.
      if (got === 0 && Date.now() - pulledAt < 100 && !stopping) await pause(100);
    }
  })().catch((err) => logger.error({ err }, "worker:loop-failed"));

  return {
    events,
    inFlight: () => active.size,
    health: () => health,
    consumerStats: () => stats,
    async stop(graceMs: number) {
      if (stopping) return;
      stopping = true;
      clearInterval(watchdog);
      events.emit("worker:stopping", { worker, inFlight: active.size, graceMs });
      abandonPull("stopping");
      wake?.();
      slotFreed?.();
      const deadline = Date.now() + graceMs;
      while (active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      let aborted = 0;
      for (const [m, ac] of active) {
        ac.abort(new Error("shutdown"));
        settle(() => m.nak());
        aborted++;
      }
      health = { ok: false, reason: "stopped", since: new Date().toISOString() };
      await Promise.race([loop, new Promise((r) => setTimeout(r, 100))]);
      events.emit("worker:stopped", { worker, aborted });
    },
  };
}

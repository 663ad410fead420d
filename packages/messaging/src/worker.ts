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
import { type DeadLetter, HEADERS, subjects, type Tenant } from "@nexus/contracts";
import { backoffMs, entityMsgId, type RetrySchedule } from "@nexus/core";
import type { Logger } from "pino";
import { dependencyOutage, isNatsTimeout, isNotFound, type OutageDependency } from "./errors.ts";
import { buildHeaders } from "./publish.ts";

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
  /** The message's W3C traceparent header, if any. */
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
   * Does the job. Returning means done (the message is acked); returning a
   * {@link DeadLetterRequest} dead-letters it without retries; throwing is a transient failure
   * (retried per the schedule until `maxAttempts`).
   */
  handle(job: J, ctx: JobContext): Promise<void | DeadLetterRequest>;
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
  /** `consumer_missing`, `stream_missing`, `heartbeats_missed`, `stalled`, `jetstream_unreachable`, `stopped`, `starting`. */
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
  "job:start": [{ worker: string; subject: string; seq: number; attempt: number }];
  /** The attempt finished; the message was acked. */
  "job:success": [{ worker: string; subject: string; seq: number; attempt: number; ms: number }];
  /**
   * The attempt threw; the job is retried after `delayMs`. `outage` names the unreachable
   * dependency when that was the cause (the attempt is not counted against `maxAttempts`).
   */
  "job:error": [
    {
      worker: string;
      subject: string;
      seq: number;
      attempt: number;
      delayMs: number;
      err: unknown;
      outage?: OutageDependency;
    },
  ];
  /** The job is given up and dead-lettered (attempts spent, or the handler asked for it). */
  "job:failed": [{ worker: string; subject: string; seq: number; attempt: number; reason: string; code: string }];
  /** A message did not parse; dead-lettered without handling. */
  "job:poison": [{ worker: string; subject: string; seq: number; error: string }];
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
  /** The consumer's ack wait, ms: in-progress acks go every third of it (default 30000). */
  ackWaitMs?: number;
  /** How often the consumer's existence and progress are checked, ms (default 5000). */
  probeMs?: number;
  /** Idle heartbeat asked of JetStream for each pull, ms (default 1000): three silent ones abandon the pull. */
  heartbeatMs?: number;
  /** Expiry of each pull request, ms (default 5000). */
  pullExpiresMs?: number;
  /** The connection, to pull afresh when it reconnects (recommended). */
  nc?: Pick<NatsConnection, "status" | "isClosed">;
  /** Which errors are dependency outages (default {@link dependencyOutage}). */
  isOutage?: (err: unknown) => OutageDependency | undefined;
  events?: WorkerEvents;
}

/** A running worker. */
export interface Worker {
  readonly events: WorkerEvents;
  /** Jobs being handled right now. */
  inFlight(): number;
  /** The consumer's health, for `/ready`. */
  health(): ConsumerHealth;
  /**
   * Graceful stop (ARCHITECTURE.md invariant 8): stops pulling, lets in-flight jobs finish for
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
  heartbeatMs: 1000,
  pullExpiresMs: 5000,
} as const;

/**
 * Parks `msg` on the dead-letter stream with why, with `Nats-Msg-Id`
 * `<org>.<project>.<worker>-<stream_seq>:dlq.<reason>` so a retried dead-lettering is stored once.
 * @throws when JetStream does not acknowledge it (the caller keeps the message).
 */
export async function deadLetter(
  js: Pick<JetStreamClient, "publish">,
  msg: Pick<JsMsg, "data" | "subject" | "info" | "headers">,
  o: { worker: string; source: "cmd" | "approval"; tenant: Tenant | null } & DeadLetterRequest,
): Promise<void> {
  const letter: DeadLetter = {
    reason: o.reason,
    code: o.code,
    error: o.error,
    stream: msg.info.stream,
    subject: msg.subject,
    stream_seq: msg.info.streamSequence,
    deliveries: msg.info.deliveryCount,
    payload: Buffer.from(msg.data).toString("utf8"),
    ts: new Date().toISOString(),
  };
  const t = o.tenant ?? { org_id: "_unknown", project_id: "_unknown" };
  const id = entityMsgId(t, `${o.worker}-${msg.info.streamSequence}`, `dlq.${o.reason}`);
  await js.publish(subjects.dlq(o.tenant, o.source), JSON.stringify(letter), {
    msgID: id,
    headers: buildHeaders({
      tenant: t,
      msgId: id,
      correlationId: msg.headers?.get(HEADERS.correlationId) || id,
      extra: { "Nexus-Dead-Letter-Code": o.code },
    }),
  });
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
  const alive = () => {
    lastLife = Date.now();
    if (!health.ok && health.reason !== "stopped" && health.reason !== "starting") setHealth(true);
  };

  /** Ends the pull in progress: the loop sends a new one at once. */
  const abandonPull = (why: string) => {
    const p = pull;
    if (!p) return;
    pull = undefined;
    logger.debug({ worker, why }, "worker:pull-abandoned");
    void p.close().catch(() => {});
  };

  // Supervision: every heartbeat, a pull that has been silent for three is abandoned (and the
  // consumer reported stalled); every probe, the consumer's info says whether it still exists
  // and whether it has messages it does not deliver although this process has free slots.
  let probeAt = Date.now();
  let lag: { delivered: number; behind: boolean } | undefined;
  const watchdog = setInterval(
    () => {
      if (stopping) return;
      const connected = !o.nc || (!o.nc.isClosed() && !disconnected);
      if (pull && connected && Date.now() - lastLife > 3 * heartbeatMs) {
        logger.warn({ worker, silent_ms: Date.now() - lastLife }, "worker:pull-stalled");
        setHealth(false, "stalled");
        abandonPull("stalled");
      }
      if (Date.now() - probeAt < (o.probeMs ?? WORKER_DEFAULTS.probeMs)) return;
      probeAt = Date.now();
      consumer
        .info()
        .then((ci) => {
          if (!health.ok && (health.reason === "consumer_missing" || health.reason === "jetstream_unreachable"))
            setHealth(true);
          const delivered = ci.delivered.consumer_seq;
          const starving =
            ci.num_pending > 0 &&
            active.size < concurrency &&
            (ci.config.max_ack_pending ?? -1) > ci.num_ack_pending &&
            delivered === lag?.delivered;
          if (starving && lag?.behind) {
            logger.warn({ worker, pending: ci.num_pending }, "worker:consumer-lagging");
            setHealth(false, "stalled");
            abandonPull("lagging");
          }
          lag = { delivered, behind: starving };
        })
        .catch((err) => {
          if (isNotFound(err)) setHealth(false, "consumer_missing");
          else if (isNatsTimeout(err)) setHealth(false, "jetstream_unreachable");
        });
    },
    Math.min(heartbeatMs, o.probeMs ?? WORKER_DEFAULTS.probeMs),
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
    const attempt = m.info.deliveryCount;
    const started = Date.now();
    const keepAlive = setInterval(() => settle(() => m.working()), Math.max(250, Math.floor(ackWaitMs / 3)));
    try {
      const parsed = spec.parse(m);
      if (!parsed.ok) {
        await deadLetter(js, m, {
          worker,
          source: spec.dlqSource,
          tenant: parsed.tenant,
          reason: "poison",
          code: "POISON_MESSAGE",
          error: parsed.error,
        });
        // A bare +TERM: nats-server < 2.10.4 ignores "+TERM <reason>" and redelivers; the reason is in the dead letter.
        settle(() => m.term());
        events.emit("job:poison", { worker, subject: m.subject, seq: m.seq, error: parsed.error });
        return;
      }
      const log = logger.child(Object.fromEntries(Object.entries(parsed.log).filter(([, v]) => v !== undefined)));
      const ctx: JobContext = {
        logger: log,
        signal: ac.signal,
        attempt,
        maxAttempts,
        seq: m.seq,
        subject: m.subject,
        traceparent: m.headers?.get(HEADERS.traceparent) || undefined,
      };
      events.emit("job:start", { worker, subject: m.subject, seq: m.seq, attempt });
      try {
        const r = await spec.handle(parsed.job, ctx);
        if (ac.signal.aborted) return; // shutdown: nak'ed by stop()
        outage(undefined);
        if (r) {
          await deadLetter(js, m, { worker, source: spec.dlqSource, tenant: parsed.tenant, ...r });
          settle(() => m.term());
          events.emit("job:failed", {
            worker,
            subject: m.subject,
            seq: m.seq,
            attempt,
            reason: r.reason,
            code: r.code,
          });
          return;
        }
        settle(() => m.ack());
        events.emit("job:success", { worker, subject: m.subject, seq: m.seq, attempt, ms: Date.now() - started });
      } catch (err) {
        if (ac.signal.aborted) return;
        const dependency = isOutage(err);
        if (dependency) {
          // Not the job's fault: try again soon, without spending an attempt (see above).
          outage(dependency);
          const delayMs = 500 + Math.floor(Math.random() * 1000);
          events.emit("job:error", {
            worker,
            subject: m.subject,
            seq: m.seq,
            attempt,
            delayMs,
            err,
            outage: dependency,
          });
          settle(() => m.nak(delayMs));
          return;
        }
        if (attempt >= maxAttempts) {
          try {
            const code = (await spec.onExhausted?.(parsed.job, err, ctx)) ?? "RETRIES_EXHAUSTED";
            await deadLetter(js, m, {
              worker,
              source: spec.dlqSource,
              tenant: parsed.tenant,
              reason: "retries_exhausted",
              code,
              error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
            });
            settle(() => m.term());
            events.emit("job:failed", {
              worker,
              subject: m.subject,
              seq: m.seq,
              attempt,
              reason: "retries_exhausted",
              code,
            });
            return;
          } catch (err2) {
            log.error({ err: err2 }, "job:fail-recording-failed");
          }
        }
        const delayMs = backoffMs(attempt, retry);
        events.emit("job:error", { worker, subject: m.subject, seq: m.seq, attempt, delayMs, err });
        settle(() => m.nak(delayMs));
      }
    } catch (err) {
      // Dead-lettering failed (NATS down): keep the message, try again later.
      logger.error({ err, subject: m.subject, seq: m.seq }, "worker:dead-letter-failed");
      settle(() => m.nak(backoffMs(attempt, retry)));
    } finally {
      clearInterval(keepAlive);
      active.delete(m);
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
          if (st.type === "heartbeat") alive();
          else if (st.type === "consumer_deleted" || st.type === "consumer_not_found")
            setHealth(false, "consumer_missing");
          else if (st.type === "heartbeats_missed" && st.count >= 2) setHealth(false, "heartbeats_missed");
        }
      })().catch(() => {});
      try {
        for await (const m of p) {
          alive();
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

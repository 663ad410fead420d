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
 *   is not redelivered to another replica and a crashed one is redelivered after one ack wait.
 *
 * The runner never creates its consumer: a missing consumer is reported (health, events) and
 * waited for, never silently re-created from the start of the stream.
 */
import { EventEmitter } from "node:events";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { type DeadLetter, HEADERS, subjects, type Tenant } from "@nexus/contracts";
import { backoffMs, entityMsgId, type RetrySchedule } from "@nexus/core";
import type { Logger } from "pino";
import { isNatsTimeout, isNotFound } from "./errors.ts";
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
  /** `consumer_missing`, `stream_missing`, `heartbeats_missed`, `jetstream_unreachable`, `stopped`, `starting`. */
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
  /** The attempt threw; the job is retried after `delayMs`. */
  "job:error": [{ worker: string; subject: string; seq: number; attempt: number; delayMs: number; err: unknown }];
  /** The job is given up and dead-lettered (attempts spent, or the handler asked for it). */
  "job:failed": [{ worker: string; subject: string; seq: number; attempt: number; reason: string; code: string }];
  /** A message did not parse; dead-lettered without handling. */
  "job:poison": [{ worker: string; subject: string; seq: number; error: string }];
  /** The consumer became unhealthy (it is missing, or pulls stalled). */
  "consumer:unhealthy": [{ worker: string; reason: string }];
  /** The consumer is delivering again. */
  "consumer:healthy": [{ worker: string }];
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
  /** How often the consumer's existence is checked, ms (default 5000). */
  probeMs?: number;
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
  ackWaitMs: 30_000,
  probeMs: 5000,
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
 * @throws nats.js errors when the consumer cannot be bound at start (missing: provision first).
 */
export async function runWorker<J>(o: RunWorkerOptions<J>): Promise<Worker> {
  const { spec, js, logger } = o;
  const concurrency = o.concurrency ?? WORKER_DEFAULTS.concurrency;
  const maxAttempts = o.maxAttempts ?? WORKER_DEFAULTS.maxAttempts;
  const retry = o.retry ?? WORKER_DEFAULTS.retry;
  const ackWaitMs = o.ackWaitMs ?? WORKER_DEFAULTS.ackWaitMs;
  const events = o.events ?? createWorkerEvents();
  const worker = spec.name;

  const consumer: Consumer = await js.consumers.get(spec.stream, spec.consumer);
  const messages: ConsumerMessages = await consumer.consume({ max_messages: concurrency });
  const active = new Map<JsMsg, AbortController>();
  let slotFreed: (() => void) | undefined;
  let stopping = false;
  let health: ConsumerHealth = { ok: true, since: new Date().toISOString() };

  const setHealth = (ok: boolean, reason?: string) => {
    if (health.ok === ok && health.reason === reason) return;
    health = { ok, ...(reason ? { reason } : {}), since: new Date().toISOString() };
    if (ok) events.emit("consumer:healthy", { worker });
    else events.emit("consumer:unhealthy", { worker, reason: reason ?? "unknown" });
  };

  // Consumer status notifications (nats.js): a deleted or missing consumer, missed heartbeats.
  void (async () => {
    for await (const s of messages.status()) {
      if (s.type === "consumer_deleted" || s.type === "consumer_not_found") setHealth(false, "consumer_missing");
      else if (s.type === "stream_not_found") setHealth(false, "stream_missing");
      else if (s.type === "heartbeats_missed" && s.count >= 2) setHealth(false, "heartbeats_missed");
      else if (s.type === "heartbeat") setHealth(true);
    }
  })().catch(() => {});

  // A periodic probe: the status stream only speaks when a pull fails, which may take an
  // expiry (30 s); asking for the consumer's info notices a deletion within `probeMs`.
  const probe = setInterval(() => {
    if (stopping) return;
    consumer
      .info()
      .then(() => {
        if (!health.ok && (health.reason === "consumer_missing" || health.reason === "jetstream_unreachable"))
          setHealth(true);
      })
      .catch((err) => {
        if (isNotFound(err)) setHealth(false, "consumer_missing");
        else if (isNatsTimeout(err)) setHealth(false, "jetstream_unreachable");
      });
  }, o.probeMs ?? WORKER_DEFAULTS.probeMs);
  probe.unref();

  const settle = (what: () => void) => {
    try {
      what();
    } catch (err) {
      logger.warn({ err }, "worker:settle-failed");
    }
  };

  const run = async (m: JsMsg) => {
    const ac = new AbortController();
    active.set(m, ac);
    const attempt = m.info.deliveryCount;
    const started = Date.now();
    const keepAlive = setInterval(() => settle(() => m.working()), Math.max(250, Math.floor(ackWaitMs / 3)));
    try {
      if (!health.ok && health.reason !== "stopped") setHealth(true);
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

  const loop = (async () => {
    for await (const m of messages) {
      if (stopping) {
        settle(() => m.nak());
        continue;
      }
      while (active.size >= concurrency) await new Promise<void>((r) => (slotFreed = r));
      void run(m);
    }
  })().catch((err) => logger.error({ err }, "worker:loop-failed"));

  return {
    events,
    inFlight: () => active.size,
    health: () => health,
    async stop(graceMs: number) {
      if (stopping) return;
      stopping = true;
      clearInterval(probe);
      events.emit("worker:stopping", { worker, inFlight: active.size, graceMs });
      await messages.close().catch(() => {});
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

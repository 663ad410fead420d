import type { ConsumerStats, WorkerEvents } from "@nexus/messaging";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/**
 * Writes one log line per worker lifecycle event (debug for routine ones, warn/error for
 * failures). Every line about a job carries its context: tenant (`org_id`, `project_id`),
 * `command_id` / `ask_id`, `correlation_id` and `trace_id`, as far as they are known. A dead
 * letter whose failure code is on the alarm list is logged as `dead-letter:alarm` (error).
 */
export function logWorkerEvents(events: WorkerEvents, logger: Logger): void {
  events.on("job:start", ({ context, ...e }) => logger.debug({ ...context, ...e }, "job:start"));
  events.on("job:success", ({ context, ...e }) => logger.debug({ ...context, ...e }, "job:success"));
  events.on("job:snoozed", ({ context, ...e }) => logger.debug({ ...context, ...e }, "job:snoozed"));
  // An outage is logged once by dependency:down / dependency:up, not once per job.
  events.on("job:error", ({ context, err, ...e }) =>
    e.outage
      ? logger.debug({ ...context, ...e, err }, "job:error")
      : logger.warn({ ...context, ...e, err }, "job:error"),
  );
  events.on("dependency:down", (e) => logger.warn(e, `${e.dependency} unavailable: jobs wait for it`));
  events.on("dependency:up", (e) => logger.info(e, `${e.dependency} available again after ${e.ms} ms`));
  events.on("job:failed", ({ context, ...e }) =>
    logger.error({ ...context, ...e }, e.disposition === "alarm" ? "dead-letter:alarm" : "job:failed"),
  );
  events.on("job:poison", ({ context, ...e }) =>
    logger.error({ ...context, ...e }, e.disposition === "alarm" ? "dead-letter:alarm" : "job:poison"),
  );
  events.on("dead-letter:requeue-failed", ({ context, err, ...e }) =>
    logger.error({ ...context, ...e, err }, "dead-letter:requeue-failed"),
  );
  events.on("consumer:unhealthy", (e) => logger.error(e, "consumer:unhealthy"));
  events.on("consumer:healthy", (e) => logger.info(e, "consumer:healthy"));
  events.on("worker:stopping", (e) => logger.info(e, "worker:stopping"));
  events.on("worker:stopped", (e) => logger.info(e, "worker:stopped"));
}

/** The worker's consumer, for the pending gauges. */
export interface MeteredConsumer {
  /** The worker's name (`command-worker`): the `worker` label. */
  worker: string;
  stream: string;
  consumer: string;
  /** The counts as last read by the worker's probe. */
  stats: () => ConsumerStats | undefined;
}

const HANDLER_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Prometheus metrics fed by worker events (one prefix, `nexus_`; no tenant labels):
 * - `nexus_jobs_total{worker,outcome}` — attempts: success, error (retried), failed
 *   (dead-lettered), poison, snoozed, outage (a dependency was unreachable: no attempt spent);
 * - `nexus_job_duration_seconds{worker,outcome}` — handler latency (success, error, failed);
 * - `nexus_job_retries_total{worker}` — attempts that threw and will be retried;
 * - `nexus_dead_letters_total{worker,reason,code,disposition}`;
 * - `nexus_dead_letter_alarms_total{worker,code}` — dead letters on the alarm list;
 * - `nexus_dead_letter_requeue_failures_total{worker}` — automatic requeues not published;
 * - `nexus_consumer_healthy{worker}` (1/0), `nexus_jobs_in_flight{worker}`;
 * - with `consumer`: `nexus_consumer_pending`, `nexus_consumer_ack_pending`,
 *   `nexus_consumer_redelivered`, `nexus_consumer_waiting` `{worker,stream,consumer}` — from the
 *   consumer's info, read every probe interval.
 */
export function meterWorkerEvents(
  events: WorkerEvents,
  registry: Registry,
  inFlight: () => number,
  consumer?: MeteredConsumer,
): void {
  const jobs = new Counter({
    name: "nexus_jobs_total",
    help: "Job attempts by outcome: success, error (retried), failed (dead-lettered), poison, snoozed",
    labelNames: ["worker", "outcome"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "nexus_job_duration_seconds",
    help: "Handler latency of job attempts, by outcome (success, error, failed)",
    labelNames: ["worker", "outcome"],
    buckets: HANDLER_BUCKETS,
    registers: [registry],
  });
  const retries = new Counter({
    name: "nexus_job_retries_total",
    help: "Job attempts that threw and are retried after a backoff",
    labelNames: ["worker"],
    registers: [registry],
  });
  const deadLetters = new Counter({
    name: "nexus_dead_letters_total",
    help: "Messages dead-lettered, by reason, failure code and disposition (requeue, hold, alarm)",
    labelNames: ["worker", "reason", "code", "disposition"],
    registers: [registry],
  });
  const alarms = new Counter({
    name: "nexus_dead_letter_alarms_total",
    help: "Dead letters whose failure code is on AUTO_ALARM_FAILURE_CODES (or whose automatic requeues are spent)",
    labelNames: ["worker", "code"],
    registers: [registry],
  });
  const requeueFailures = new Counter({
    name: "nexus_dead_letter_requeue_failures_total",
    help: "Automatic requeues of dead letters that could not be published (the dead letter stays held)",
    labelNames: ["worker"],
    registers: [registry],
  });
  const healthy = new Gauge({
    name: "nexus_consumer_healthy",
    help: "1 while the worker's durable consumer delivers, 0 when it is missing or stalled",
    labelNames: ["worker"],
    registers: [registry],
  });
  let worker = consumer?.worker ?? "";
  new Gauge({
    name: "nexus_jobs_in_flight",
    help: "Jobs being handled by this process",
    labelNames: ["worker"],
    registers: [registry],
    collect() {
      this.set({ worker }, inFlight());
    },
  });
  if (consumer) {
    const labels = { worker: consumer.worker, stream: consumer.stream, consumer: consumer.consumer };
    healthy.set({ worker: consumer.worker }, 1);
    const gauge = (name: string, help: string, pick: (s: ConsumerStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["worker", "stream", "consumer"],
        registers: [registry],
        collect() {
          const s = consumer.stats();
          if (s) this.set(labels, pick(s));
        },
      });
    gauge("nexus_consumer_pending", "Messages on the stream not yet delivered to any worker (lag)", (s) => s.pending);
    gauge("nexus_consumer_ack_pending", "Messages delivered and not yet acked", (s) => s.ackPending);
    gauge("nexus_consumer_redelivered", "Messages delivered more than once and not yet acked", (s) => s.redelivered);
    gauge("nexus_consumer_waiting", "Pull requests waiting on the server", (s) => s.waiting);
  }
  events.on("job:start", (e) => {
    worker = e.worker;
  });
  events.on("job:success", (e) => {
    jobs.inc({ worker: e.worker, outcome: "success" });
    duration.observe({ worker: e.worker, outcome: "success" }, e.ms / 1000);
  });
  events.on("job:error", (e) => {
    if (e.outage) {
      jobs.inc({ worker: e.worker, outcome: "outage" });
      return;
    }
    jobs.inc({ worker: e.worker, outcome: "error" });
    retries.inc({ worker: e.worker });
    duration.observe({ worker: e.worker, outcome: "error" }, e.ms / 1000);
  });
  events.on("job:snoozed", (e) => jobs.inc({ worker: e.worker, outcome: "snoozed" }));
  events.on("job:failed", (e) => {
    jobs.inc({ worker: e.worker, outcome: "failed" });
    if (e.ms !== undefined) duration.observe({ worker: e.worker, outcome: "failed" }, e.ms / 1000);
    deadLetters.inc({ worker: e.worker, reason: e.reason, code: e.code, disposition: e.disposition });
    if (e.disposition === "alarm") alarms.inc({ worker: e.worker, code: e.code });
  });
  events.on("job:poison", (e) => {
    jobs.inc({ worker: e.worker, outcome: "poison" });
    deadLetters.inc({ worker: e.worker, reason: "poison", code: "POISON_MESSAGE", disposition: e.disposition });
    if (e.disposition === "alarm") alarms.inc({ worker: e.worker, code: "POISON_MESSAGE" });
  });
  events.on("dead-letter:requeue-failed", (e) => requeueFailures.inc({ worker: e.worker }));
  events.on("consumer:unhealthy", (e) => healthy.set({ worker: e.worker }, 0));
  events.on("consumer:healthy", (e) => healthy.set({ worker: e.worker }, 1));
}

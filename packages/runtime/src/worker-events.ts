import type { WorkerEvents } from "@nexus/messaging";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** Writes one log line per worker lifecycle event (debug for routine ones, warn/error for failures). */
export function logWorkerEvents(events: WorkerEvents, logger: Logger): void {
  events.on("job:start", (e) => logger.debug(e, "job:start"));
  events.on("job:success", (e) => logger.debug(e, "job:success"));
  // An outage is logged once by dependency:down / dependency:up, not once per job.
  events.on("job:error", ({ err, ...e }) =>
    e.outage ? logger.debug({ ...e, err }, "job:error") : logger.warn({ ...e, err }, "job:error"),
  );
  events.on("dependency:down", (e) => logger.warn(e, `${e.dependency} unavailable: jobs wait for it`));
  events.on("dependency:up", (e) => logger.info(e, `${e.dependency} available again after ${e.ms} ms`));
  events.on("job:failed", (e) => logger.error(e, "job:failed"));
  events.on("job:poison", (e) => logger.error(e, "job:poison"));
  events.on("consumer:unhealthy", (e) => logger.error(e, "consumer:unhealthy"));
  events.on("consumer:healthy", (e) => logger.info(e, "consumer:healthy"));
  events.on("worker:stopping", (e) => logger.info(e, "worker:stopping"));
  events.on("worker:stopped", (e) => logger.info(e, "worker:stopped"));
}

/**
 * Prometheus metrics fed by worker events (one prefix, `nexus_`; no tenant labels):
 * `nexus_jobs_total{worker,outcome}` (success, error, outage, failed, poison),
 * `nexus_job_duration_seconds{worker}`, `nexus_jobs_in_flight{worker}`,
 * `nexus_dead_letters_total{worker,reason,code}`, `nexus_consumer_healthy{worker}` (1/0).
 */
export function meterWorkerEvents(events: WorkerEvents, registry: Registry, inFlight: () => number): void {
  const jobs = new Counter({
    name: "nexus_jobs_total",
    help: "Job attempts by outcome: success, error (retried), failed (dead-lettered), poison",
    labelNames: ["worker", "outcome"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "nexus_job_duration_seconds",
    help: "Duration of successful job attempts",
    labelNames: ["worker"],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const deadLetters = new Counter({
    name: "nexus_dead_letters_total",
    help: "Messages dead-lettered, by reason and failure code",
    labelNames: ["worker", "reason", "code"],
    registers: [registry],
  });
  const healthy = new Gauge({
    name: "nexus_consumer_healthy",
    help: "1 while the worker's durable consumer delivers, 0 when it is missing or stalled",
    labelNames: ["worker"],
    registers: [registry],
  });
  let worker = "";
  new Gauge({
    name: "nexus_jobs_in_flight",
    help: "Jobs being handled by this process",
    labelNames: ["worker"],
    registers: [registry],
    collect() {
      this.set({ worker }, inFlight());
    },
  });
  events.on("job:start", (e) => {
    worker = e.worker;
  });
  events.on("job:success", (e) => {
    jobs.inc({ worker: e.worker, outcome: "success" });
    duration.observe({ worker: e.worker }, e.ms / 1000);
  });
  events.on("job:error", (e) => jobs.inc({ worker: e.worker, outcome: e.outage ? "outage" : "error" }));
  events.on("job:failed", (e) => {
    jobs.inc({ worker: e.worker, outcome: "failed" });
    deadLetters.inc({ worker: e.worker, reason: e.reason, code: e.code });
  });
  events.on("job:poison", (e) => {
    jobs.inc({ worker: e.worker, outcome: "poison" });
    deadLetters.inc({ worker: e.worker, reason: "poison", code: "POISON_MESSAGE" });
  });
  events.on("consumer:unhealthy", (e) => healthy.set({ worker: e.worker }, 0));
  events.on("consumer:healthy", (e) => healthy.set({ worker: e.worker }, 1));
}

// First, and on its own (a side-effect import is never reordered): OpenTelemetry must be in
// place before pg and fastify load.
import "./tracing.ts";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import { addHealthRoutes, createHttpApp } from "@nexus/http";
import { isNatsConnected, lastMessageReader, runWorker } from "@nexus/messaging";
import {
  consumerReadyChecks,
  listen,
  logWorkerEvents,
  meterWorkerEvents,
  onShutdown,
  parseConfig,
  startRuntime,
  triageOf,
} from "@nexus/runtime";
import { ApprovalWorkerConfig } from "./config.ts";
import { createExpirySweeper } from "./expiry.ts";
import { askEventSpec } from "./jobs.ts";
import { tracing } from "./tracing.ts";

const config = parseConfig(ApprovalWorkerConfig, process.env);
const { logger, nc, js, jsm, db, metrics } = await startRuntime("approval-worker", config, {
  streams: [STREAMS.approvals, STREAMS.commands, STREAMS.reports, STREAMS.dlq, STREAMS.notify],
  consumers: [{ stream: STREAMS.approvals, name: CONSUMERS.approvalWorker }],
});
const now = () => new Date();

const worker = await runWorker({
  js,
  logger,
  spec: askEventSpec({ db, js, now, publishTimeoutMs: config.PUBLISH_TIMEOUT_MS }),
  concurrency: config.WORKER_CONCURRENCY,
  maxAttempts: config.MAX_ATTEMPTS,
  retry: { baseMs: config.RETRY_BASE_MS, maxMs: config.RETRY_MAX_MS },
  ackWaitMs: config.CONSUMER_ACK_WAIT_MS,
  stallMs: config.CONSUMER_STALL_MS,
  triage: triageOf(config),
  publishTimeoutMs: config.PUBLISH_TIMEOUT_MS,
  nc,
});
logWorkerEvents(worker.events, logger);
meterWorkerEvents(worker.events, metrics, worker.inFlight, {
  worker: "approval-worker",
  stream: STREAMS.approvals,
  consumer: CONSUMERS.approvalWorker,
  stats: worker.consumerStats,
});

const sweeper = createExpirySweeper({
  db,
  js,
  readLast: lastMessageReader(jsm),
  logger,
  now,
  intervalMs: config.EXPIRY_SWEEP_MS,
  publishTimeoutMs: config.PUBLISH_TIMEOUT_MS,
  connected: () => isNatsConnected(nc),
});
sweeper.start();

const app = createHttpApp({ logger, metrics });
addHealthRoutes(app, {
  checks: consumerReadyChecks({ nc: nc, db: db, consumerOk: () => worker.health().ok }),
  graceMs: config.READY_GRACE_MS,
});
const port = await listen(app, config);
logger.info({ port }, "approval-worker:consuming");

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop pulling, finish or nak in-flight entries, stop the sweeper (invariant 8), then close.
  await worker.stop(config.SHUTDOWN_GRACE_MS);
  await sweeper.stop();
  await app.close();
  await nc.drain().catch(() => {});
  await db.destroy();
  await tracing.shutdown();
});

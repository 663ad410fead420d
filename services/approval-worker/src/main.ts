/**
 * approval-worker entry point: the only place that reads `process.env`.
 * Connects NATS and Postgres, checks the topology, starts the decision consumer, the expiry
 * sweeper, the webhook relay (when SHARE_WEBHOOK_URL is set) and /health, /ready, /metrics.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import {
  addHealthRoutes,
  checkTopology,
  connectNats,
  createDb,
  createHttpApp,
  createLogger,
  createMetrics,
  jetStreamReportPublisher,
  onShutdown,
  parseConfig,
  provisionTopology,
} from "@nexus/platform";
import { ApprovalWorkerConfig, workerOptionsFromConfig } from "./config.ts";
import { createWorkerEvents, logEvents, meterEvents } from "./events.ts";
import { createApprovalWorker } from "./worker.ts";

const config = parseConfig(ApprovalWorkerConfig, process.env);
const logger = createLogger({ service: "approval-worker", level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
const nc = await connectNats({ url: config.NATS_URL, name: "approval-worker", logger });
const jsm = await jetstreamManager(nc);
if (config.PROVISION_ON_START)
  await provisionTopology(
    jsm,
    {
      streamEventKeep: config.STREAM_EVENT_KEEP,
      replicas: config.STREAM_REPLICAS,
      storage: config.STREAM_STORAGE,
      workMaxAgeSeconds: config.WORK_MAX_AGE_SECONDS,
      duplicateWindowMs: config.DUPLICATE_WINDOW_MS,
      consumerAckWaitMs: config.CONSUMER_ACK_WAIT_MS,
    },
    logger,
  );
await checkTopology(jsm, {
  streams: [STREAMS.approvals, STREAMS.reports, STREAMS.dlq],
  consumers: [{ stream: STREAMS.approvals, name: CONSUMERS.approvalWorker }],
});
const js = jetstream(nc);
const db = createDb({ url: config.DATABASE_URL, applicationName: "approval-worker" });
const metrics = createMetrics("approval-worker");
const events = createWorkerEvents();
logEvents(events, logger);
meterEvents(events, metrics);

const worker = createApprovalWorker({
  db,
  js,
  nc,
  reports: jetStreamReportPublisher(js),
  logger,
  config: workerOptionsFromConfig(config),
  events,
});
await worker.start();

const app = createHttpApp({ logger, metrics });
addHealthRoutes(app, { nc, db });
await app.listen({ host: config.HOST, port: config.PORT });
logger.info(
  { port: config.PORT, webhook_relay: Boolean(config.SHARE_WEBHOOK_URL), max_retries: config.MAX_RETRIES },
  "approval-worker:consuming",
);

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop pulling, finish or nak in-flight decisions, stop sweeper and relay (invariant 8),
  // then close HTTP, drain NATS and close the pool.
  await worker.stop(config.SHUTDOWN_GRACE_MS);
  await app.close();
  await nc.drain().catch(() => {});
  await db.destroy();
});

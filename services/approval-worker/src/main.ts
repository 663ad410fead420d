import { CONSUMERS, STREAMS } from "@nexus/contracts";
import {
  addHealthRoutes,
  createHttpApp,
  jetStreamReportPublisher,
  onShutdown,
  parseConfig,
  startRuntime,
} from "@nexus/platform";
import { ApprovalWorkerConfig, workerOptionsFromConfig } from "./config.ts";
import { createWorkerEvents, logEvents, meterEvents } from "./events.ts";
import { createApprovalWorker } from "./worker.ts";

const config = parseConfig(ApprovalWorkerConfig, process.env);
const { logger, nc, js, db, metrics } = await startRuntime("approval-worker", config, {
  streams: [STREAMS.approvals, STREAMS.reports, STREAMS.dlq],
  consumers: [{ stream: STREAMS.approvals, name: CONSUMERS.approvalWorker }],
});
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

import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { STREAMS } from "@nexus/contracts";
import {
  checkTopology,
  connectNats,
  createDb,
  createLogger,
  createMetrics,
  jetStreamReportPublisher,
  onShutdown,
  parseConfig,
  provisionTopology,
} from "@nexus/platform";
import { buildGateway } from "./app.ts";
import { GatewayConfig } from "./config.ts";

const config = parseConfig(GatewayConfig, process.env);
const logger = createLogger({ service: "gateway", level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
const nc = await connectNats({ url: config.NATS_URL, name: "gateway", logger });
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
await checkTopology(jsm, { streams: [STREAMS.commands, STREAMS.approvals, STREAMS.reports] });
const js = jetstream(nc);
const db = createDb({ url: config.DATABASE_URL, applicationName: "gateway" });
const metrics = createMetrics("gateway");
const app = await buildGateway({
  config,
  db,
  nc,
  js,
  reports: jetStreamReportPublisher(js, config.PUBLISH_TIMEOUT_MS),
  logger,
  metrics,
  now: () => new Date(),
});
await app.listen({ host: config.HOST, port: config.PORT });
logger.info({ port: config.PORT }, "gateway:listening");

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop taking requests, let in-flight ones finish (each is one transaction), then drain NATS.
  await app.close();
  await nc.drain().catch(() => {});
  await db.destroy();
});

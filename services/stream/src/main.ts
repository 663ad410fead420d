import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { STREAMS } from "@nexus/contracts";
import {
  checkTopology,
  connectNats,
  createDb,
  createLogger,
  createMetrics,
  onShutdown,
  parseConfig,
  provisionTopology,
} from "@nexus/platform";
import { buildStreamApp, closeStream } from "./app.ts";
import { StreamConfig } from "./config.ts";

// The only place that reads process.env (STYLE.md "Configuration").
const config = parseConfig(StreamConfig, process.env);
const logger = createLogger({ service: "stream", level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
const nc = await connectNats({ url: config.NATS_URL, name: "stream", logger });
const jsm = await jetstreamManager(nc);
if (config.PROVISION_ON_START) {
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
} else {
  await checkTopology(jsm, { streams: [STREAMS.reports] });
}
const js = jetstream(nc);
const db = createDb({ url: config.DATABASE_URL, applicationName: "stream" });
const metrics = createMetrics("stream");

const app = await buildStreamApp({ nc, js, jsm, db, logger, config, metrics });
await app.listen({ host: config.HOST, port: config.PORT });
logger.info({ port: config.PORT, heartbeat_ms: config.SSE_HEARTBEAT_MS }, "stream:listening");

onShutdown(logger, config.SHUTDOWN_GRACE_MS, () =>
  closeStream({ app, nc, db, graceMs: config.SHUTDOWN_GRACE_MS, logger }),
);

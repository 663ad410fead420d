// First, and on its own (a side-effect import is never reordered): OpenTelemetry must be in
// place before pg and fastify load.
import "./tracing.ts";
import { STREAMS } from "@nexus/contracts";
import { deadLetterStore, isNatsConnected, lastMessageReader, streamPurger } from "@nexus/messaging";
import { listen, onShutdown, parseConfig, startRuntime, streamUsageMetrics } from "@nexus/runtime";
import { buildGateway } from "./app.ts";
import { GatewayConfig } from "./config.ts";
import { crashAt } from "./deps.ts";
import { tracing } from "./tracing.ts";

const config = parseConfig(GatewayConfig, process.env);
const { logger, nc, js, jsm, db, metrics } = await startRuntime("gateway", config, {
  streams: [STREAMS.commands, STREAMS.approvals, STREAMS.reports, STREAMS.notify, STREAMS.dlq],
});
const faults = crashAt(config.FAULT_INJECT_CRASH_AT);
const deps = {
  config,
  db,
  js,
  readLast: lastMessageReader(jsm),
  purge: streamPurger(jsm),
  deadLetters: deadLetterStore(js, jsm),
  natsConnected: () => isNatsConnected(nc),
  natsReady: async () => {
    if (!isNatsConnected(nc)) return false;
    await nc.flush();
    return true;
  },
  logger,
  metrics,
  now: () => new Date(),
  ...(faults ? { faults } : {}),
};
const app = await buildGateway(deps);
const port = await listen(app, config);
logger.info({ port }, "gateway:listening");

// Stream usage against each stream's byte limit (the JetStreamStreamNearFull alert).
const streamUsage = streamUsageMetrics(metrics, jsm, Object.values(STREAMS), { intervalMs: 15_000, logger });

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop taking requests and let in-flight ones finish (and the relay), then drain NATS.
  streamUsage.stop();
  await app.close();
  await nc.drain().catch(() => {});
  await db.destroy();
  await tracing.shutdown();
});

import { STREAMS } from "@nexus/contracts";
import { jetStreamReportPublisher, onShutdown, parseConfig, startRuntime } from "@nexus/platform";
import { buildGateway } from "./app.ts";
import { GatewayConfig } from "./config.ts";

const config = parseConfig(GatewayConfig, process.env);
const { logger, nc, js, db, metrics } = await startRuntime("gateway", config, {
  streams: [STREAMS.commands, STREAMS.approvals, STREAMS.reports],
});
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

import { CONSUMERS, STREAMS } from "@nexus/contracts";
import {
  addHealthRoutes,
  createHttpApp,
  jetStreamReportPublisher,
  onShutdown,
  parseConfig,
  startRuntime,
  startWorkConsumer,
} from "@nexus/platform";
import { Counter } from "prom-client";
import { CommandWorkerConfig } from "./config.ts";
import { greenHandlers } from "./handlers/index.ts";
import { redHandlers } from "./handlers/red.ts";
import { OfflineDraftProvider } from "./llm/offline-provider.ts";
import { processCommand } from "./process.ts";

const config = parseConfig(CommandWorkerConfig, process.env);
const { logger, nc, js, db, metrics } = await startRuntime("command-worker", config, {
  streams: [STREAMS.commands, STREAMS.reports, STREAMS.dlq],
  consumers: [{ stream: STREAMS.commands, name: CONSUMERS.commandWorker }],
});
const events = new Counter({
  name: "command_events_total",
  help: "Command lifecycle events in this worker",
  labelNames: ["event", "type"],
  registers: [metrics],
});

const consumer = await startWorkConsumer({
  js,
  stream: STREAMS.commands,
  consumer: CONSUMERS.commandWorker,
  maxInFlight: config.WORKER_CONCURRENCY,
  logger,
  handle: (msg, signal) =>
    processCommand(
      {
        db,
        js,
        reports: jetStreamReportPublisher(js),
        logger,
        now: () => new Date(),
        llm: new OfflineDraftProvider(),
        handlers: [...greenHandlers, ...redHandlers],
        config,
        events: (event, m) => events.inc({ event, type: m.type }),
      },
      msg,
      signal,
    ),
});

const app = createHttpApp({ logger, metrics });
addHealthRoutes(app, { nc, db });
await app.listen({ host: config.HOST, port: config.PORT });
logger.info({ port: config.PORT, concurrency: config.WORKER_CONCURRENCY }, "command-worker:consuming");

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop pulling, finish or nak in-flight commands, then drain NATS (invariant 8).
  await consumer.stop(config.SHUTDOWN_GRACE_MS);
  await app.close();
  await nc.drain().catch(() => {});
  await db.destroy();
});

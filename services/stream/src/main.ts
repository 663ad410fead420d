// First, and on its own (a side-effect import is never reordered): OpenTelemetry must be in
// place before pg and fastify load.
import "./tracing.ts";
import { STREAMS } from "@nexus/contracts";
import { listen, onShutdown, parseConfig, startRuntime } from "@nexus/runtime";
import { buildStreamApp, closeStream } from "./app.ts";
import { StreamConfig } from "./config.ts";
import { tracing } from "./tracing.ts";

// The only place that reads process.env (the repository's convention).
const config = parseConfig(StreamConfig, process.env);
const { logger, nc, jsm, js, db, metrics } = await startRuntime("stream", config, { streams: [STREAMS.reports] });

const app = await buildStreamApp({ nc, js, jsm, db, logger, config, metrics });
const port = await listen(app, config);
logger.info({ port, heartbeat_ms: config.SSE_HEARTBEAT_MS }, "stream:listening");

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  await closeStream({ app, nc, db, graceMs: config.SHUTDOWN_GRACE_MS, logger });
  await tracing.shutdown();
});

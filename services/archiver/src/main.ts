import { CONSUMERS, STREAMS } from "@nexus/contracts";
import { listen, onShutdown, parseConfig, startRuntime } from "@nexus/runtime";
import type { ArchiverFaultStep } from "./archiver.ts";
import { ArchiverConfig } from "./config.ts";
import { startArchiverService } from "./service.ts";

// The only place that reads process.env (the repository's convention).
const config = parseConfig(ArchiverConfig, process.env);
const { logger, nc, js, jsm, db, metrics } = await startRuntime("archiver", config, {
  streams: [STREAMS.reports],
  consumers: [{ stream: STREAMS.reports, name: CONSUMERS.archiver }],
});
const crashAt = new Set(
  config.FAULT_INJECT_CRASH_AT.split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);
const service = await startArchiverService({
  nc,
  js,
  jsm,
  db,
  logger,
  metrics,
  config,
  ...(crashAt.size > 0
    ? {
        faults: (step: ArchiverFaultStep) => {
          if (crashAt.has(step)) process.kill(process.pid, "SIGKILL");
        },
      }
    : {}),
});
const port = await listen(service.app, config);
logger.info({ port, batch_size: config.ARCHIVER_BATCH_SIZE }, "archiver:consuming");

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop pulling, finish the batch in progress, nak the rest (invariant 8), then close.
  await service.close(config.SHUTDOWN_GRACE_MS);
  await nc.drain().catch(() => {});
  await db.destroy();
});

// First, and on its own (a side-effect import is never reordered): OpenTelemetry must be in
// place before pg and fastify load.
import "./tracing.ts";
import { EventEmitter } from "node:events";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import { createLlmEvents, createWebhookRelay, OutboxShareConnector, type ShareRelayEventMap } from "@nexus/handlers";
import { addHealthRoutes, createHttpApp } from "@nexus/http";
import { runWorker } from "@nexus/messaging";
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
import { CommandWorkerConfig } from "./config.ts";
import { meterGroupCommit } from "./db-metrics.ts";
import { commandWorkerSpec, groupCommitWrites } from "./jobs.ts";
import { createLlm, planLlmChain } from "./llm.ts";
import { meterLlmEvents } from "./llm-metrics.ts";
import { tracing } from "./tracing.ts";

const config = parseConfig(CommandWorkerConfig, process.env);
// Fail fast, before connecting anywhere: LLM_REQUIRED=true without a usable provider stops here
// with a message naming what is missing.
planLlmChain(config);
const { logger, nc, js, db, metrics } = await startRuntime("command-worker", config, {
  streams: [STREAMS.commands, STREAMS.reports, STREAMS.dlq, STREAMS.notify],
  consumers: [{ stream: STREAMS.commands, name: CONSUMERS.commandWorker }],
});
const now = () => new Date();
const llmEvents = createLlmEvents();
const { llm, plan } = createLlm(config, { db, logger, events: llmEvents });
meterLlmEvents(llmEvents, metrics, llm.providers);
llmEvents.on("llm:budget", (e) => logger.warn(e, "llm:budget"));
llmEvents.on("llm:call", (e) => logger.debug(e, "llm:call"));
logger.info(
  { providers: llm.providers, offline_fallback: plan.offlineFallback, skipped: plan.skipped },
  "command-worker:llm",
);

const worker = await runWorker({
  js,
  logger,
  spec: commandWorkerSpec({
    db,
    writes: groupCommitWrites(db, { onStatement: meterGroupCommit(metrics), lingerMs: config.GROUP_COMMIT_LINGER_MS }),
    js,
    llm,
    live: { nc, intervalMs: config.LLM_PROGRESS_INTERVAL_MS, logger },
    share: new OutboxShareConnector(db, now),
    now,
    config,
  }),
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
  worker: "command-worker",
  stream: STREAMS.commands,
  consumer: CONSUMERS.commandWorker,
  stats: worker.consumerStats,
});

const shareEvents = new EventEmitter<ShareRelayEventMap>();
shareEvents.on("share:delivered", (e) => logger.info(e, "share:delivered"));
shareEvents.on("share:retry", (e) => logger.warn(e, "share:retry"));
shareEvents.on("share:failed", (e) => logger.error(e, "share:failed"));
const relay =
  config.SHARE_WEBHOOK_URL && config.SHARE_WEBHOOK_SECRET
    ? createWebhookRelay(
        {
          url: config.SHARE_WEBHOOK_URL,
          secret: config.SHARE_WEBHOOK_SECRET,
          maxAttempts: config.WEBHOOK_MAX_ATTEMPTS,
          timeoutMs: config.WEBHOOK_TIMEOUT_MS,
          pollMs: config.WEBHOOK_POLL_MS,
          retryBaseMs: config.WEBHOOK_RETRY_BASE_MS,
          retryMaxMs: config.WEBHOOK_RETRY_MAX_MS,
        },
        { db, logger, events: shareEvents, clock: now },
      )
    : undefined;
relay?.start();

const app = createHttpApp({ logger, metrics });
addHealthRoutes(app, {
  checks: consumerReadyChecks({ nc: nc, db: db, consumerOk: () => worker.health().ok }),
  graceMs: config.READY_GRACE_MS,
});
const port = await listen(app, config);
logger.info(
  { port, concurrency: config.WORKER_CONCURRENCY, webhook_relay: Boolean(relay) },
  "command-worker:consuming",
);

onShutdown(logger, config.SHUTDOWN_GRACE_MS, async () => {
  // Stop pulling, finish or nak in-flight jobs (invariant 8), stop the relay, then close.
  await worker.stop(config.SHUTDOWN_GRACE_MS);
  await relay?.stop();
  await app.close();
  await nc.drain().catch(() => {});
  await db.destroy();
  await tracing.shutdown();
});

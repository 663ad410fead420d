import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import { countUnchained, type Database, pruneArchive } from "@nexus/core";
import { type App, addHealthRoutes, createHttpApp } from "@nexus/http";
import { jetStreamReportLog } from "@nexus/messaging";
import { consumerReadyChecks } from "@nexus/runtime";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { type Archiver, type ArchiverEvents, type ArchiverFaultStep, startArchiver } from "./archiver.ts";
import type { ArchiverConfig } from "./config.ts";

/** Everything the archiver service runs on; built by `main.ts` or a test. */
export interface ArchiverServiceDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  db: Kysely<Database>;
  logger: Logger;
  metrics: Registry;
  config: ArchiverConfig;
  now?: () => Date;
  faults?: (step: ArchiverFaultStep) => void | Promise<void>;
}

/** How far the archive is behind NEXUS_REPORTS (see {@link ArchiverService.pollLag}). */
export interface ArchiveLag {
  /** NEXUS_REPORTS' last sequence. */
  stream_last_seq: number;
  /** The consumer's ack floor: every report at or below it is archived (or refused / erased). */
  archived_seq: number;
  /** `stream_last_seq - archived_seq`: reports published but not yet archived (an upper bound). */
  lag_reports: number;
  /** Reports not yet delivered to any archiver (consumer `num_pending`). */
  num_pending: number;
  /** Reports delivered but not yet acknowledged (consumer `num_ack_pending`). */
  num_ack_pending: number;
  /** Rows stored but waiting to be chained (several replicas, redeliveries). */
  unchained_rows: number;
  /** ISO 8601 time of this reading. */
  at: string;
}

/** The running service. */
export interface ArchiverService {
  app: App;
  archiver: Archiver;
  /** The newest lag reading (read every `ARCHIVER_LAG_POLL_MS`). */
  lag(): ArchiveLag | undefined;
  /** Reads the lag now (also updates the gauges). @throws nats.js / pg errors. */
  pollLag(): Promise<ArchiveLag>;
  /** Runs retention pruning once now. @returns rows deleted. */
  prune(): Promise<number>;
  /** Stops the archiver (bounded by `graceMs`), the timers and the HTTP server; NATS and Postgres are the caller's. */
  close(graceMs: number): Promise<void>;
}

/** Logs every archiver event (debug for routine ones). */
function logEvents(events: ArchiverEvents, logger: Logger): void {
  events.on("batch:archived", (e) => logger.debug(e, "batch:archived"));
  events.on("batch:failed", ({ err, ...e }) => logger.warn({ ...e, err }, "batch:failed"));
  events.on("chain:swept", (e) => logger.info(e, "chain:swept"));
  events.on("report:refused", (e) => logger.error(e, "report:refused"));
  events.on("coverage:reset", (e) => logger.error(e, "coverage:reset"));
  events.on("consumer:unhealthy", (e) => logger.error(e, "consumer:unhealthy"));
  events.on("consumer:healthy", () => logger.info("consumer:healthy"));
  events.on("archiver:stopped", (e) => logger.info(e, "archiver:stopped"));
}

/**
 * Prometheus metrics (prefix `archiver_`, no tenant labels): `archiver_reports_total{outcome}`
 * (chained, deferred, skipped, refused), `archiver_batches_total{outcome}` (archived, failed),
 * `archiver_batch_seconds`, `archiver_coverage_resets_total`, `archiver_consumer_healthy`,
 * and from the lag reading `archiver_lag_reports`, `archiver_archived_seq`,
 * `archiver_stream_last_seq`, `archiver_consumer_pending`, `archiver_consumer_ack_pending`,
 * `archiver_unchained_rows`, `archiver_pruned_rows_total`.
 */
function meter(events: ArchiverEvents, registry: Registry) {
  const reports = new Counter({
    name: "archiver_reports_total",
    help: "Reports handled, by outcome: chained, deferred (stored, chained later), skipped (already archived or erased), refused",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const batches = new Counter({
    name: "archiver_batches_total",
    help: "Batches, by outcome: archived, failed (retried)",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: "archiver_batch_seconds",
    help: "Duration of archived batches (read to acknowledged)",
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const resets = new Counter({
    name: "archiver_coverage_resets_total",
    help: "Tenants whose archive coverage restarted because a report may have been lost to retention before archiving",
    registers: [registry],
  });
  const healthy = new Gauge({
    name: "archiver_consumer_healthy",
    help: "1 while the archiver's durable consumer delivers, 0 when it is missing or stalled",
    registers: [registry],
  });
  healthy.set(1);
  events.on("batch:archived", (e) => {
    batches.inc({ outcome: "archived" });
    seconds.observe(e.ms / 1000);
    reports.inc({ outcome: "chained" }, e.chained);
    reports.inc({ outcome: "deferred" }, e.deferred);
    reports.inc({ outcome: "skipped" }, e.skipped);
    reports.inc({ outcome: "refused" }, e.refused);
  });
  events.on("chain:swept", (e) => reports.inc({ outcome: "chained" }, e.chained));
  events.on("batch:failed", () => batches.inc({ outcome: "failed" }));
  events.on("coverage:reset", () => resets.inc());
  events.on("consumer:unhealthy", () => healthy.set(0));
  events.on("consumer:healthy", () => healthy.set(1));
  const g = (name: string, help: string) => new Gauge({ name, help, registers: [registry] });
  return {
    lag: g("archiver_lag_reports", "NEXUS_REPORTS last sequence minus the archived sequence (ack floor)"),
    archived: g("archiver_archived_seq", "Every report at or below this stream sequence is archived"),
    last: g("archiver_stream_last_seq", "NEXUS_REPORTS last sequence"),
    pending: g("archiver_consumer_pending", "Reports not yet delivered to an archiver (num_pending)"),
    ackPending: g("archiver_consumer_ack_pending", "Reports delivered, not yet acknowledged (num_ack_pending)"),
    unchained: g("archiver_unchained_rows", "Archived rows waiting to be chained"),
    pruned: new Counter({
      name: "archiver_pruned_rows_total",
      help: "Archive rows deleted by retention (ARCHIVE_KEEP_DAYS)",
      registers: [registry],
    }),
  };
}

/**
 * Builds the archiver service: the archiver (archiver.ts), the lag reading, retention pruning
 * every `ARCHIVE_PRUNE_INTERVAL_MS`, and `/health`, `/ready` (NATS, Postgres, consumer; the lag
 * under `details.archive`), `/metrics`. Call `app.listen()` on the result.
 * @throws when the durable consumer `archiver` is missing (run `pnpm provision`).
 */
export async function startArchiverService(d: ArchiverServiceDeps): Promise<ArchiverService> {
  const { config, logger } = d;
  const now = d.now ?? (() => new Date());
  const archiver = await startArchiver({
    js: d.js,
    db: d.db,
    log: jetStreamReportLog(d.jsm),
    logger,
    batchSize: config.ARCHIVER_BATCH_SIZE,
    lingerMs: config.ARCHIVER_LINGER_MS,
    retry: { baseMs: config.RETRY_BASE_MS, maxMs: config.RETRY_MAX_MS },
    now,
    ...(d.faults ? { faults: d.faults } : {}),
  });
  logEvents(archiver.events, logger);
  const m = meter(archiver.events, d.metrics);

  let latest: ArchiveLag | undefined;
  const pollLag = async (): Promise<ArchiveLag> => {
    const [stream, consumer, unchained] = await Promise.all([
      d.jsm.streams.info(STREAMS.reports),
      d.jsm.consumers.info(STREAMS.reports, CONSUMERS.archiver),
      countUnchained(d.db),
    ]);
    const archived = consumer.ack_floor.stream_seq;
    const lag: ArchiveLag = {
      stream_last_seq: stream.state.last_seq,
      archived_seq: archived,
      lag_reports: Math.max(0, stream.state.last_seq - archived),
      num_pending: consumer.num_pending,
      num_ack_pending: consumer.num_ack_pending,
      unchained_rows: unchained,
      at: now().toISOString(),
    };
    m.lag.set(lag.lag_reports);
    m.archived.set(archived);
    m.last.set(lag.stream_last_seq);
    m.pending.set(lag.num_pending);
    m.ackPending.set(lag.num_ack_pending);
    m.unchained.set(unchained);
    latest = lag;
    return lag;
  };
  const lagTimer = setInterval(() => {
    pollLag().catch((err) => logger.warn({ err }, "archiver:lag-poll-failed"));
  }, config.ARCHIVER_LAG_POLL_MS);
  lagTimer.unref();

  let pruning: Promise<number> | undefined;
  const abort = new AbortController();
  const prune = () => {
    pruning ??= pruneArchive(d.db, {
      keepDays: config.ARCHIVE_KEEP_DAYS,
      now: now(),
      batchSize: config.ARCHIVE_PRUNE_BATCH,
      signal: abort.signal,
    })
      .then((n) => {
        m.pruned.inc(n);
        if (n > 0) logger.info({ deleted: n, keep_days: config.ARCHIVE_KEEP_DAYS }, "archive:pruned");
        return n;
      })
      .finally(() => {
        pruning = undefined;
      });
    return pruning;
  };
  const pruneTimer =
    config.ARCHIVE_PRUNE_INTERVAL_MS > 0
      ? setInterval(() => {
          prune().catch((err) => logger.warn({ err }, "archive:prune-failed"));
        }, config.ARCHIVE_PRUNE_INTERVAL_MS)
      : undefined;
  pruneTimer?.unref();

  const app = createHttpApp({ logger, metrics: d.metrics });
  addHealthRoutes(app, {
    checks: consumerReadyChecks({ nc: d.nc, db: d.db, consumerOk: () => archiver.health().ok }),
    details: async () => {
      const lag = await Promise.race([
        pollLag().catch(() => latest),
        new Promise<ArchiveLag | undefined>((r) => setTimeout(() => r(latest), 500)),
      ]);
      return { archive: lag ?? null, consumer: archiver.health() };
    },
  });

  return {
    app,
    archiver,
    lag: () => latest,
    pollLag,
    prune,
    async close(graceMs) {
      clearInterval(lagTimer);
      clearInterval(pruneTimer);
      abort.abort();
      await archiver.stop(graceMs);
      await pruning?.catch(() => {});
      await app.close();
    },
  };
}

import { type JetStreamClient, type JetStreamManager, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { apiError, parseCursor, type Tenant } from "@nexus/contracts";
import { AppError, type Database, readSnapshot, type SnapshotReader } from "@nexus/core";
import { type App, addHealthRoutes, authPlugin, createHttpApp, hijackReply } from "@nexus/http";
import { isNatsConnected } from "@nexus/messaging";
import type { FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import { sql } from "kysely";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { StreamConfig } from "./config.ts";
import { type CloseReason, SseConnection } from "./connection.ts";
import {
  type ArchiveLog,
  awaitCursorSource,
  type CursorSource,
  jetStreamReportLog,
  pickCursor,
  postgresArchiveLog,
  type ReportLog,
} from "./cursor.ts";
import { snapshotFrame } from "./frames.ts";
import { type HubLease, type HubListener, HubRegistry } from "./hub.ts";
import { ARCHIVE_POLL_MS, followFrom } from "./replay.ts";
import { sharedReads } from "./snapshots.ts";

/** Everything the stream service runs on; built by `main.ts` or a test. */
export interface StreamDeps {
  /** For `/ready` only. */
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  db: Kysely<Database>;
  logger: Logger;
  config: StreamConfig;
  /** The process's metrics registry (served at `/metrics`). */
  metrics: Registry;
  /** Reads the snapshot state (default {@link readSnapshot}); tests wrap it to interleave writes. */
  readSnapshot?: SnapshotReader;
  /** The JetStream client of the tenant hubs (default: one over `nc` with a 2 s API timeout). */
  hubJs?: JetStreamClient;
  /** Report stream reads (default {@link jetStreamReportLog} over `jsm`). */
  reportLog?: ReportLog;
  /**
   * Archive reads (default {@link postgresArchiveLog} over `db` when `ARCHIVE_REPLAY` is on);
   * tests wrap it to interleave pruning or purges.
   */
  archiveLog?: ArchiveLog;
  now?: () => Date;
}

/** Live counters of one stream app, for tests and operators. */
export interface StreamState {
  /** Running tenant hubs (one JetStream read each). */
  hubCount(): number;
  /** Open SSE connections. */
  connectionCount(): number;
  /** Listeners attached to a tenant's hub (0 when it has none). */
  hubListenerCount(tenant: Tenant): number;
  /** Whether a hub for the tenant is running. */
  hasHub(tenant: Tenant): boolean;
}

/** The Fastify instance of the stream service with its {@link StreamState}. */
export type StreamApp = App & { readonly reportStream: StreamState };

/** How long a hub waits for a JetStream API answer (creating its reader), ms. */
const HUB_API_TIMEOUT_MS = 2000;

/** Path of the report stream (docs/contract.md, LOCKED). */
export const STREAM_PATH = "/agent/reports/stream";

/**
 * Builds the stream service: `GET /agent/reports/stream` (docs/contract.md "GET
 * /agent/reports/stream"), `/health`, `/ready`, `/metrics`. Call `listen()` on the result.
 *
 * Per connection: headers and `retry: 3000`; the cursor (`Last-Event-ID` over `?cursor=`);
 * either replay after a valid cursor (from JetStream, or from the archive and then JetStream:
 * the rule is {@link cursorSource}), or (no cursor, or an invalid one after an `error`
 * CURSOR_EXPIRED event) a snapshot at W followed by every report after W; then live from the
 * tenant's hub; `ping` every `SSE_HEARTBEAT_MS`. `app.close()` ends every SSE response cleanly
 * and stops the hubs (docs/architecture.md invariant 8); NATS and the database are the caller's.
 *
 * Live `progress` events (no id) go to live connections only, from one core NATS subscription
 * per tenant hub (hub.ts); they never touch a connection's cursor.
 *
 * Metrics: `nexus_sse_connections`, `nexus_sse_hubs`, `nexus_sse_hub_buffered_bytes` (gauges),
 * `nexus_sse_reports_sent_total`, `nexus_sse_progress_sent_total`, `nexus_sse_replays_total`,
 * `nexus_sse_archive_replays_total`, `nexus_sse_archive_reports_sent_total`,
 * `nexus_sse_cursor_expired_total`, `nexus_sse_disconnects_total{reason}`,
 * `nexus_sse_hub_restarts_total{reason}`, `nexus_sse_hub_proofs_total{outcome}`.
 */
export async function buildStreamApp(deps: StreamDeps): Promise<StreamApp> {
  const { config, logger, metrics, db } = deps;
  const log = deps.reportLog ?? jetStreamReportLog(deps.jsm);
  const archive =
    deps.archiveLog ??
    (config.ARCHIVE_REPLAY
      ? postgresArchiveLog(db, { keepDays: config.ARCHIVE_KEEP_DAYS, now: deps.now ?? (() => new Date()) })
      : undefined);
  const snapshotOf = deps.readSnapshot ?? readSnapshot;
  // Connections of one tenant asking at once share snapshot reads (snapshots.ts, invariants 6 and 10).
  const tenantSnapshot = sharedReads(
    (t: Tenant) => snapshotOf(db, t, { worklogLimit: config.STREAM_WORKLOG_KEEP }),
    (t) => `${t.org_id}/${t.project_id}`,
  );
  const now = deps.now ?? (() => new Date());

  const connectionsGauge = new Gauge({
    name: "nexus_sse_connections",
    help: "Open SSE connections",
    registers: [metrics],
  });
  const hubsGauge = new Gauge({
    name: "nexus_sse_hubs",
    help: "Running tenant hubs (one JetStream read each)",
    registers: [metrics],
  });
  const reportsSent = new Counter({
    name: "nexus_sse_reports_sent_total",
    help: "Report events written to SSE connections",
    registers: [metrics],
  });
  const replays = new Counter({
    name: "nexus_sse_replays_total",
    help: "Connections that replayed from JetStream before going live",
    registers: [metrics],
  });
  const archiveReplays = new Counter({
    name: "nexus_sse_archive_replays_total",
    help: "Connections whose cursor was older than JetStream's retention and replayed from the archive",
    registers: [metrics],
  });
  const archiveReports = new Counter({
    name: "nexus_sse_archive_reports_sent_total",
    help: "Report events written from the archive",
    registers: [metrics],
  });
  const cursorExpired = new Counter({
    name: "nexus_sse_cursor_expired_total",
    help: "Connections whose cursor was invalid or outside retention",
    registers: [metrics],
  });
  const disconnects = new Counter({
    name: "nexus_sse_disconnects_total",
    help: "SSE connections ended, by reason",
    labelNames: ["reason"],
    registers: [metrics],
  });
  const hubRestarts = new Counter({
    name: "nexus_sse_hub_restarts_total",
    help: "Restarts of a tenant hub's JetStream reader, by reason (reconnect, heartbeats_missed, stalled, lagging, consumer_lost)",
    labelNames: ["reason"],
    registers: [metrics],
  });

  const hubProofs = new Counter({
    name: "nexus_sse_hub_proofs_total",
    help: "Gap proofs of the tenant hubs (is the last report still retained?), by outcome (ok, lost, unanswered)",
    labelNames: ["outcome"],
    registers: [metrics],
  });

  const progressSent = new Counter({
    name: "nexus_sse_progress_sent_total",
    help: "Live progress events written to SSE connections (best-effort, no id)",
    registers: [metrics],
  });
  const hubs = new HubRegistry(
    {
      // The hubs' own JetStream client: creating a reader gives up after 2 s (not nats.js's 5 s),
      // so a restart retries soon after a new stream leader is elected.
      js: deps.hubJs ?? jetstream(deps.nc, { timeout: HUB_API_TIMEOUT_MS }),
      nc: deps.nc,
      log,
      logger,
      bufferSize: config.HUB_BUFFER_SIZE,
      bufferBytes: config.HUB_BUFFER_BYTES,
      idleMs: config.HUB_IDLE_MS,
      heartbeatMs: config.HUB_HEARTBEAT_MS,
      probeMs: config.HUB_PROBE_MS,
      connected: () => isNatsConnected(deps.nc),
    },
    (n) => hubsGauge.set(n),
    (reason) => hubRestarts.inc({ reason }),
    (outcome) => hubProofs.inc({ outcome }),
  );
  new Gauge({
    name: "nexus_sse_hub_buffered_bytes",
    help: "Bytes of report frames held in the tenant hubs' rings (each bounded by HUB_BUFFER_BYTES)",
    registers: [metrics],
    collect() {
      this.set(hubs.bufferedBytes());
    },
  });
  // A reconnect may follow a server restart (ordered consumers are gone) or move the connection
  // to another cluster node: every hub restarts its reader from its last sequence.
  void (async () => {
    for await (const s of deps.nc.status()) if (s.type === "reconnect") hubs.reconnected();
  })().catch(() => {});
  const connections = new Set<SseConnection>();
  let closing = false;

  const app = createHttpApp({ logger, metrics });
  await app.register(authPlugin, { auth: config, db, tickets: true, ...(deps.now ? { now: deps.now } : {}) });
  addHealthRoutes(app, {
    checks: {
      nats: () => isNatsConnected(deps.nc),
      postgres: async () => {
        await sql`select 1`.execute(db);
        return true;
      },
    },
    graceMs: config.READY_GRACE_MS,
  });

  const state: StreamState = {
    hubCount: () => hubs.size,
    connectionCount: () => connections.size,
    hubListenerCount: (t) => hubs.find(t)?.listenerCount ?? 0,
    hasHub: (t) => hubs.find(t) !== undefined,
  };
  app.decorate("reportStream", state);

  // Invariant 8: before the HTTP server closes, end every SSE response (the client keeps the
  // last id it received and resumes elsewhere) and stop the hubs' JetStream reads.
  app.addHook("preClose", async () => {
    closing = true;
    for (const c of [...connections]) c.close("shutdown");
    await hubs.stopAll();
  });

  /** Sets up one connection; returns once it is live (or closed). */
  async function serve(conn: SseConnection, tenant: Tenant, rawCursor: string | undefined): Promise<void> {
    const leaseP = hubs.acquire(tenant);
    leaseP.then(
      (l) => conn.addTeardown(l.release),
      () => {},
    );
    let from: number | null = null;
    let source: CursorSource = "jetstream";
    if (rawCursor !== undefined) {
      const c = parseCursor(rawCursor);
      const found =
        c === null
          ? null
          : await awaitCursorSource(log, archive, tenant, c, {
              waitMs: config.ARCHIVE_WAIT_MS,
              pollMs: ARCHIVE_POLL_MS,
              closed: () => conn.closed,
            });
      if (c !== null && found !== null) {
        from = c;
        source = found;
      } else {
        cursorExpired.inc();
        conn.sendError(apiError("CURSOR_EXPIRED"));
      }
    }
    const lease: HubLease = await leaseP;
    if (conn.closed) return;
    if (from === null) {
      // Invariant 6: W first, then the database, then tail from W + 1.
      const w = await log.lastSeq(tenant);
      const snapshot = await tenantSnapshot(tenant);
      if (conn.closed) return;
      conn.sendSnapshot(w, snapshotFrame({ snapshot, report_id: String(w), tenant, ts: now().toISOString() }));
      from = w;
    } else {
      conn.lastSent = from;
    }
    // The hub may still be behind `from` (its consumer lags the stream): attaching is still
    // right, because it delivers every report above its baseSeq and the connection's id guard
    // drops the ones at or below `from`.
    const listener: HubListener = {
      deliver: (r) => conn.sendReport(r),
      fail: () => conn.close("hub_failed"),
      progress: (frame) => {
        if (conn.sendProgress(frame)) progressSent.inc();
      },
      get closed() {
        return conn.closed;
      },
    };
    conn.addTeardown(() => lease.hub.detach(listener));
    conn.startHeartbeat();
    await followFrom(
      {
        js: deps.js,
        log,
        logger,
        batchSize: config.REPLAY_BATCH_SIZE,
        handoffBytes: Math.floor(config.SSE_MAX_BUFFERED_BYTES / 2),
        onReplay: () => replays.inc(),
        ...(archive ? { archive } : {}),
        archiveBatchSize: config.ARCHIVE_REPLAY_BATCH_SIZE,
        archiveWaitMs: config.ARCHIVE_WAIT_MS,
        onArchiveReplay: () => archiveReplays.inc(),
        onArchiveReport: (n) => archiveReports.inc(n),
      },
      conn,
      lease.hub,
      listener,
      from,
      source,
    );
  }

  /** Open streams per tenant and per tenant+principal on this instance (caps of invariant 10). */
  const perTenant = new Map<string, number>();
  const perPrincipal = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string, d: number) => {
    const n = (m.get(k) ?? 0) + d;
    if (n <= 0) m.delete(k);
    else m.set(k, n);
  };

  app.get(STREAM_PATH, { config: { tenant: true, tenantFromQuery: true, roles: ["viewer"] } }, async (req, reply) => {
    const tenant = req.tenant;
    const rawCursor = pickCursor(req.headers["last-event-id"], (req.query as Record<string, unknown>).cursor);
    const tKey = `${tenant.org_id}/${tenant.project_id}`;
    const pKey = `${tKey}/${req.principal}`;
    if ((perTenant.get(tKey) ?? 0) >= config.STREAM_MAX_PER_TENANT)
      throw new AppError("RATE_LIMITED", "Too many open streams for this tenant");
    if ((perPrincipal.get(pKey) ?? 0) >= config.STREAM_MAX_PER_PRINCIPAL)
      throw new AppError("RATE_LIMITED", "Too many open streams for this principal");
    bump(perTenant, tKey, 1);
    bump(perPrincipal, pKey, 1);
    let expiry: NodeJS.Timeout | undefined;
    const conn = new SseConnection(hijackReply(reply), {
      heartbeatMs: config.SSE_HEARTBEAT_MS,
      maxBufferedBytes: config.SSE_MAX_BUFFERED_BYTES,
      drainTimeoutMs: config.SSE_DRAIN_TIMEOUT_MS,
      now,
      onReportSent: (n) => reportsSent.inc(n),
      onClose: (reason: CloseReason) => {
        bump(perTenant, tKey, -1);
        bump(perPrincipal, pKey, -1);
        clearTimeout(expiry);
        connections.delete(conn);
        connectionsGauge.dec();
        disconnects.inc({ reason });
        req.log.debug({ org_id: tenant.org_id, project_id: tenant.project_id, reason }, "sse:closed");
      },
    });
    connections.add(conn);
    connectionsGauge.inc();
    conn.start();
    // The stream lives no longer than its credential: then a recoverable CREDENTIAL_EXPIRED,
    // and the client re-authenticates and resumes from its last id (docs/contract.md).
    if (req.credentialExpiresAt !== undefined)
      expiry = setTimeout(
        () => {
          conn.sendError(apiError("CREDENTIAL_EXPIRED"));
          conn.close("credential_expired");
        },
        Math.max(0, req.credentialExpiresAt - Date.now()),
      );
    if (closing) {
      conn.close("shutdown");
      return;
    }
    try {
      await serve(conn, tenant, rawCursor);
    } catch (err) {
      if (conn.closed) return;
      req.log.warn({ err, org_id: tenant.org_id, project_id: tenant.project_id }, "sse:setup-failed");
      conn.sendError(apiError("DEPENDENCY_UNAVAILABLE"));
      conn.close("error");
    }
  });

  return app as StreamApp;
}

/** What {@link closeStream} shuts down. */
export interface CloseStreamOptions {
  app: FastifyInstance;
  nc: NatsConnection;
  db: Kysely<Database>;
  /** `SHUTDOWN_GRACE_MS`: the whole sequence is bounded by it. */
  graceMs: number;
  logger: Logger;
}

/**
 * The one bounded shutdown of the stream service (docs/architecture.md invariant 8): stop accepting
 * and end every SSE response (`app.close()`), stop the hubs, drain NATS, close the database.
 * Resolves within about `graceMs` even if a step hangs (the rest are still attempted).
 */
export async function closeStream(o: CloseStreamOptions): Promise<void> {
  const deadline = Date.now() + o.graceMs;
  const bounded = async (what: string, p: Promise<unknown>) => {
    const left = Math.max(0, deadline - Date.now());
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), left);
    });
    try {
      const r = await Promise.race([p.then(() => "ok" as const), timeout]);
      if (r === "timeout") o.logger.warn({ step: what }, "shutdown:step-timed-out");
    } catch (err) {
      o.logger.warn({ err, step: what }, "shutdown:step-failed");
    } finally {
      clearTimeout(timer);
    }
  };
  await bounded("http", o.app.close());
  await bounded("nats", o.nc.drain());
  await bounded("db", o.db.destroy());
}

import { randomUUID } from "node:crypto";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { AgentReport, Tenant } from "@nexus/contracts";
import { connectNats } from "@nexus/messaging";
import { createLogger, parseConfig } from "@nexus/runtime";
import {
  openSse,
  type ReportPublisher,
  reportPublisher,
  type SseClient,
  type TestDatabase,
  type TestNats,
  tenantHeaders,
} from "@nexus/testkit";
import { Registry } from "prom-client";
import { buildStreamApp, type StreamApp, type StreamDeps } from "../src/app.ts";
import { StreamConfig } from "../src/config.ts";
import { type ArchiveLog, jetStreamReportLog, postgresArchiveLog, type ReportLog } from "../src/cursor.ts";

/** A stream app on a free port of 127.0.0.1 with its own NATS connection. */
export interface Harness {
  app: StreamApp;
  baseUrl: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  pub: ReportPublisher;
  metrics: Registry;
  /** URL of the stream endpoint with the tenant in the query (EventSource style) plus extra params. */
  streamUrl(t: Tenant, extra?: Record<string, string>): string;
  /** Opens the stream for a tenant with tenant headers (plus extra headers / query). */
  open(t: Tenant, o?: { headers?: Record<string, string>; query?: Record<string, string> }): Promise<SseClient>;
  /** A metric's value from /metrics (first sample, 0 when absent). */
  metric(name: string): Promise<number>;
  close(): Promise<void>;
}

/** Starts a {@link Harness}; `env` overrides StreamConfig variables (strings, as from the environment). */
export async function startHarness(o: {
  nats: TestNats;
  db: TestDatabase;
  env?: Record<string, string>;
  readSnapshot?: StreamDeps["readSnapshot"];
  /** Wraps the JetStream-backed report log (e.g. to make `covers` answer false on demand). */
  wrapReportLog?: (real: ReportLog) => ReportLog;
  /** Wraps the Postgres-backed archive log (e.g. to fail a proof on demand). */
  wrapArchiveLog?: (real: ArchiveLog) => ArchiveLog;
  /** The service's clock (archive retention is judged by it). */
  now?: () => Date;
}): Promise<Harness> {
  const config = parseConfig(StreamConfig, {
    NATS_URL: o.nats.url,
    DATABASE_URL: o.db.url,
    LOG_LEVEL: "silent",
    HUB_IDLE_MS: "200",
    ...o.env,
  });
  const logger = createLogger({ service: "stream-test", level: config.LOG_LEVEL });
  const nc = await connectNats({ url: o.nats.url, name: "stream", logger });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const metrics = new Registry();
  const app = await buildStreamApp({
    nc,
    js,
    jsm,
    db: o.db.db,
    logger,
    config,
    metrics,
    ...(o.readSnapshot ? { readSnapshot: o.readSnapshot } : {}),
    ...(o.wrapReportLog ? { reportLog: o.wrapReportLog(jetStreamReportLog(jsm)) } : {}),
    ...(o.wrapArchiveLog
      ? {
          archiveLog: o.wrapArchiveLog(
            postgresArchiveLog(o.db.db, { keepDays: config.ARCHIVE_KEEP_DAYS, now: o.now ?? (() => new Date()) }),
          ),
        }
      : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  const clients: SseClient[] = [];
  const streamUrl = (t: Tenant, extra: Record<string, string> = {}) =>
    `${baseUrl}/agent/reports/stream?${new URLSearchParams({ org_id: t.org_id, project_id: t.project_id, ...extra })}`;
  return {
    app,
    baseUrl,
    nc,
    js,
    jsm,
    pub: reportPublisher(js),
    metrics,
    streamUrl,
    async open(t, opts = {}) {
      const q = opts.query ? `?${new URLSearchParams(opts.query)}` : "";
      const c = await openSse(`${baseUrl}/agent/reports/stream${q}`, {
        headers: { ...tenantHeaders(t), ...opts.headers },
      });
      clients.push(c);
      return c;
    },
    async metric(name) {
      const text = await (await fetch(`${baseUrl}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`${name} `) || (!name.includes("{") && l.startsWith(`${name}{`)));
      return line ? Number(line.split(" ").pop()) : 0;
    },
    async close() {
      for (const c of clients) c.close();
      await app.close();
      await nc.drain().catch(() => {});
    },
  };
}

/**
 * Publishes one `command.progress` report for the tenant and returns its report_id as a number.
 * Each call uses a fresh entity id, so `Nats-Msg-Id` never deduplicates it.
 */
export async function publishReport(pub: ReportPublisher, tenant: Tenant, label = "step", extra = {}): Promise<number> {
  const commandId = randomUUID();
  const report: AgentReport = {
    type: "command.progress",
    status: "running",
    title: `Draft email: ${label}`,
    command: { command_id: commandId, type: "draft_email.create" },
    progress: { step: label },
    ...extra,
  };
  const id = await pub.publish({
    tenant,
    entityId: commandId,
    step: "progress.step",
    report,
    causality: { correlation_id: `c-${label}`, command_id: commandId },
    ts: new Date().toISOString(),
  });
  return Number(id);
}

/** Publishes `n` reports one after another; returns their report_ids in order. */
export async function publishMany(pub: ReportPublisher, tenant: Tenant, n: number, label = "r"): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await publishReport(pub, tenant, `${label}${i}`));
  return out;
}

/** Report ids (numbers) of a client's `report` events, in arrival order. */
export function reportIds(c: SseClient): number[] {
  return c.named("report").map((e) => Number(e.id));
}

/** True when `xs` strictly increases. */
export function strictlyIncreasing(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x > (xs[i - 1] as number));
}

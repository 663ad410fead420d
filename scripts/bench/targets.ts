/**
 * Systems under test ("targets"): the three baselines and ours, each a set of processes the
 * bench started itself, behind one interface the load runners drive.
 *
 * | target     | processes (CPU measured per process tree)                        |
 * |------------|------------------------------------------------------------------|
 * | `plain`    | `fastify`                                                         |
 * | `pubAck`   | `fastify`, `nats-server`                                          |
 * | `pubAckCoalesced` | the same on a `coalesceWrites` connection (a reference for accept) |
 * | `acceptCore`| `fastify`, `nats-server`: our accept code without the gateway's layers |
 * | `pipeline` | `fastify`, `worker`, `sse`, `nats-server`                         |
 * | `pipeline3`| the same, the worker publishing the contract's 3 reports per command |
 * | `pipelineDurable` | pipeline3 + `archiver` + `postgres`: the worker records each command in Postgres before its reports, the archiver writes every report there |
 * | `ours`     | `gateway`, `command-worker`, `approval-worker`, `stream`, `nats-server`, `postgres` |
 *
 * The baselines share one nats-server of their own (streams `BENCH_ACK`, `BENCH_CMD`,
 * `BENCH_REP`, and `BENCH_CORE` on `nexus.cmd.>` for acceptCore); pipelineDurable has an
 * embedded Postgres of its own; ours has its own nats-server and Postgres. Only one target is
 * loaded at a time.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AckPolicy, DeliverPolicy, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { type Cleanup, type ReadyProcess, spawnReadyProcess } from "./procs.ts";
import { profileNodeOptions } from "./profile.ts";
import { openSseFeed, type SseFeed } from "./sse-feed.ts";
import {
  createLogger,
  type NatsServerProcess,
  OUR_SERVICES,
  spawnNatsServer,
  startOurStack,
  startPostgres,
} from "./stack.ts";

/** Names of the targets. */
export type TargetId =
  | "plain"
  | "pubAck"
  | "pubAckCoalesced"
  | "acceptCore"
  | "pipeline"
  | "pipeline3"
  | "pipelineDurable"
  | "ours";

/** The command every request carries (type and params are a CLI flag). */
export interface CommandSpec {
  type: string;
  params: Record<string, unknown>;
}

/** A tenant: `x-org-id` / `x-project-id`. */
export interface BenchTenant {
  org_id: string;
  project_id: string;
}

/** One HTTP request of the load: path, headers, JSON body. */
export interface CommandRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** A system under test. */
export interface Target {
  id: TargetId;
  /** One line saying what it is, for the table's legend. */
  description: string;
  /** `http://127.0.0.1:<port>` the commands are POSTed to. */
  origin: string;
  /** The `seq`-th command (0-based; tenants are used round-robin) with id `commandId` (a UUID). */
  request(seq: number, commandId: string): CommandRequest;
  /** Root pid of each measured process, read when called (a service may have been restarted). */
  pids(): Record<string, number>;
  /**
   * Opens one SSE connection per tenant and resolves once all are live; `completed`/`failed`
   * reports are handed to `feed.onReport`. Absent for targets without a completion path.
   */
  openFeed?(): Promise<SseFeed>;
  /** Called once before the accept scenario loads it (ours stops its command-worker). */
  prepareAccept?(): Promise<void>;
  /** Called once after the warm-up (ours analyses its database, see docs/benchmarks.md). */
  afterWarmUp?(): Promise<void>;
}

const BASELINES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "baselines");

/** `count` tenants `bench-<i>` / `p`. */
export function benchTenants(count: number): BenchTenant[] {
  return Array.from({ length: count }, (_, i) => ({ org_id: `bench-${i}`, project_id: "p" }));
}

function commandRequest(
  urlPath: string,
  tenants: readonly BenchTenant[],
  spec: CommandSpec,
): (seq: number, commandId: string) => CommandRequest {
  return (seq, commandId) => {
    const t = tenants[seq % tenants.length]!;
    return {
      path: urlPath,
      headers: { "content-type": "application/json", "x-org-id": t.org_id, "x-project-id": t.project_id },
      body: JSON.stringify({
        command_id: commandId,
        type: spec.type,
        params: spec.params,
        client_context: { correlation_id: `c-${seq}` },
      }),
    };
  };
}

/** What starting targets needs. */
export interface TargetEnv {
  workDir: string;
  logDir: string;
  tenants: readonly BenchTenant[];
  command: CommandSpec;
  /** `LOG_LEVEL` of our services. */
  logLevel: string;
  /** Where our services write `<service>.cpuprofile` (`--profile`); absent = not profiled. */
  profileDir?: string;
  cleanup: Cleanup;
  log(line: string): void;
}

/** Starts targets on first use and keeps them until the bench's cleanup. */
export class TargetPool {
  private readonly env: TargetEnv;
  private readonly started = new Map<TargetId, Promise<Target>>();
  private baselineNats: Promise<NatsServerProcess> | undefined;
  private baselinePostgres: Promise<{ databaseUrl: URL; postmasterPid: number }> | undefined;
  /** CLOCK_MONOTONIC microseconds when our stack was up (profiles count samples from then on). */
  oursReadyUs: number | undefined;

  constructor(env: TargetEnv) {
    this.env = env;
  }

  /** The target, started (once) if needed. */
  get(id: TargetId): Promise<Target> {
    let t = this.started.get(id);
    if (!t) {
      t = this.start(id);
      this.started.set(id, t);
    }
    return t;
  }

  private async start(id: TargetId): Promise<Target> {
    const t0 = performance.now();
    this.env.log(`starting ${id}…`);
    const t = await (id === "ours" ? this.startOurs() : this.startBaseline(id));
    this.env.log(`${id} ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return t;
  }

  private async spawn(name: string, file: string, env: Record<string, string>): Promise<ReadyProcess> {
    const p = await spawnReadyProcess({ name, file: path.join(BASELINES_DIR, file), env, logDir: this.env.logDir });
    this.env.cleanup.add(name, () => p.stop());
    return p;
  }

  private natsForBaselines(): Promise<NatsServerProcess> {
    this.baselineNats ??= (async () => {
      const nats = await spawnNatsServer({
        storeDir: path.join(this.env.workDir, "nats-baselines"),
        logFile: path.join(this.env.logDir, "nats-baselines.log"),
      });
      this.env.cleanup.add("nats-server (baselines)", () => nats.stop());
      const nc = await connect({ servers: nats.url, noAsyncTraces: true });
      try {
        const jsm = await jetstreamManager(nc);
        const stream = { retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: 1 };
        await jsm.streams.add({ name: "BENCH_ACK", subjects: ["bench.ack.>"], ...stream });
        // acceptCore publishes where the gateway does (one subject per command).
        await jsm.streams.add({ name: "BENCH_CORE", subjects: ["nexus.cmd.>"], ...stream });
        await jsm.streams.add({ name: "BENCH_CMD", subjects: ["bench.cmd.>"], ...stream });
        await jsm.streams.add({ name: "BENCH_REP", subjects: ["bench.rep.>"], ...stream });
        await jsm.streams.add({ name: "BENCH_CMD3", subjects: ["bench.cmd3.>"], ...stream });
        await jsm.streams.add({ name: "BENCH_REP3", subjects: ["bench.rep3.>"], ...stream });
        await jsm.streams.add({ name: "BENCH_CMDD", subjects: ["bench.cmdd.>"], ...stream });
        await jsm.streams.add({ name: "BENCH_REPD", subjects: ["bench.repd.>"], ...stream });
        for (const [streamName, durable] of [
          ["BENCH_CMD", "bench-worker"],
          ["BENCH_CMD3", "bench-worker3"],
          ["BENCH_CMDD", "bench-workerd"],
          ["BENCH_REPD", "bench-archiver"],
        ] as const)
          await jsm.consumers.add(streamName, {
            durable_name: durable,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            ack_wait: 30_000_000_000,
            max_ack_pending: 1000,
          });
      } finally {
        await nc.close();
      }
      return nats;
    })();
    return this.baselineNats;
  }

  private postgresForBaselines(): Promise<{ databaseUrl: URL; postmasterPid: number }> {
    this.baselinePostgres ??= (async () => {
      const db = await startPostgres(this.env.workDir, "baselines");
      this.env.cleanup.add("postgres (baselines)", db.stop);
      return db;
    })();
    return this.baselinePostgres;
  }

  private async startBaseline(id: Exclude<TargetId, "ours">): Promise<Target> {
    const request = commandRequest("/cmd", this.env.tenants, this.env.command);
    if (id === "plain") {
      const fastify = await this.spawn("baseline-plain", "plain.ts", {});
      return {
        id,
        description: "Fastify POST → 202 (no I/O)",
        origin: `http://127.0.0.1:${fastify.port}`,
        request,
        pids: () => ({ fastify: fastify.pid }),
      };
    }
    const nats = await this.natsForBaselines();
    if (id === "acceptCore") {
      const fastify = await this.spawn("reference-accept-core", "accept-core.ts", { NATS_URL: nats.url });
      return {
        id,
        description:
          "Fastify POST → our accept code (validation, body hash, create-if-absent publish) → 202 after PubAck",
        origin: `http://127.0.0.1:${fastify.port}`,
        request,
        pids: () => ({ fastify: fastify.pid, "nats-server": nats.child.pid! }),
      };
    }
    if (id === "pubAck" || id === "pubAckCoalesced") {
      const coalesced = id === "pubAckCoalesced";
      const fastify = await this.spawn(coalesced ? "reference-pub-ack-coalesced" : "baseline-pub-ack", "pub-ack.ts", {
        NATS_URL: nats.url,
        SUBJECT_PREFIX: "bench.ack",
        ...(coalesced ? { COALESCE_WRITES: "true" } : {}),
      });
      return {
        id,
        description: coalesced
          ? "Fastify POST → JetStream publish on a coalesceWrites connection → 202 after PubAck"
          : "Fastify POST → JetStream publish → 202 after PubAck",
        origin: `http://127.0.0.1:${fastify.port}`,
        request,
        pids: () => ({ fastify: fastify.pid, "nats-server": nats.child.pid! }),
      };
    }
    // pipeline3 and pipelineDurable: their own streams, the worker publishing accepted, started
    // and completed; pipelineDurable's worker records each command in its own Postgres first
    // and an archiver writes every report there.
    const durable = id === "pipelineDurable";
    const three = id === "pipeline3" || durable;
    const sfx = durable ? "d" : three ? "3" : "";
    const db = durable ? await this.postgresForBaselines() : undefined;
    const dbEnv: Record<string, string> = db ? { DATABASE_URL: db.databaseUrl.href } : {};
    const [fastify, worker, sse, archiver] = await Promise.all([
      this.spawn(`${id}-fastify`, "pub-ack.ts", { NATS_URL: nats.url, SUBJECT_PREFIX: `bench.cmd${sfx}` }),
      this.spawn(`${id}-worker`, "worker.ts", {
        NATS_URL: nats.url,
        STREAM: `BENCH_CMD${sfx.toUpperCase()}`,
        CONSUMER: `bench-worker${sfx}`,
        REPORT_PREFIX: `bench.rep${sfx}`,
        REPORTS: three ? "3" : "1",
        ...dbEnv,
      }),
      this.spawn(`${id}-sse`, "sse.ts", { NATS_URL: nats.url, STREAM: `BENCH_REP${sfx.toUpperCase()}` }),
      durable
        ? this.spawn(`${id}-archiver`, "archiver.ts", {
            NATS_URL: nats.url,
            STREAM: "BENCH_REPD",
            CONSUMER: "bench-archiver",
            ...dbEnv,
          })
        : undefined,
    ]);
    const tenants = this.env.tenants;
    return {
      id,
      description: durable
        ? "pipeline3 + the worker recording each command in Postgres (group commit) before its reports + an archiver writing every report to Postgres (batched)"
        : three
          ? "Fastify → JetStream → worker (3 reports per command) → JetStream → SSE (bare)"
          : "Fastify → JetStream → worker → JetStream → SSE (bare)",
      origin: `http://127.0.0.1:${fastify.port}`,
      request,
      pids: () => ({
        fastify: fastify.pid,
        worker: worker.pid,
        sse: sse.pid,
        ...(archiver ? { archiver: archiver.pid } : {}),
        "nats-server": nats.child.pid!,
        ...(db ? { postgres: db.postmasterPid } : {}),
      }),
      openFeed: () =>
        openSseFeed(
          tenants.map((t) => ({
            url: `http://127.0.0.1:${sse.port}/stream?org_id=${t.org_id}&project_id=${t.project_id}`,
            headers: {},
          })),
          { waitForSnapshot: false },
        ),
    };
  }

  private async startOurs(): Promise<Target> {
    const stack = await startOurStack({
      workDir: this.env.workDir,
      logDir: this.env.logDir,
      env: { LOG_LEVEL: this.env.logLevel },
      statements: this.env.profileDir !== undefined,
      serviceEnv: this.env.profileDir
        ? Object.fromEntries(
            OUR_SERVICES.map((s) => [s, { NODE_OPTIONS: profileNodeOptions(this.env.profileDir!, s) }]),
          )
        : undefined,
      logger: createLogger({ service: "bench", level: "warn" }),
    });
    this.oursReadyUs = Number(process.hrtime.bigint() / 1000n);
    this.env.cleanup.add("our stack", () => stack.close());
    const tenants = this.env.tenants;
    const headers = (t: BenchTenant) => ({ "x-org-id": t.org_id, "x-project-id": t.project_id });
    return {
      id: "ours",
      description: "the real stack: gateway, command-worker, approval-worker, stream, NATS, Postgres",
      origin: stack.gatewayUrl,
      request: commandRequest("/sidecar/command", tenants, this.env.command),
      pids: () => stack.pids(),
      openFeed: () =>
        openSseFeed(
          tenants.map((t) => ({ url: `${stack.gatewayUrl}/agent/reports/stream`, headers: headers(t) })),
          { waitForSnapshot: true },
        ),
      // Accept measures the front door alone, like the pubAck baseline (whose stream has no
      // consumer): a running command-worker would compete for the same two cores.
      // Autovacuum analyses a database in use about once a minute; this one was created seconds
      // ago. Without statistics the planner takes a tenant-wide index for point lookups of
      // commands, and every lookup grows with the table (docs/benchmarks.md).
      afterWarmUp: () => stack.analyze(),
      prepareAccept: async () => {
        this.env.log("ours: stopping the command-worker for the accept scenario");
        await stack.stopService("command-worker");
      },
    };
  }

  /** Removes the work directory (stores, data); logs stay. */
  removeWorkDir(): void {
    fs.rmSync(this.env.workDir, { recursive: true, force: true });
  }
}

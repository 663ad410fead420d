/**
 * The chaos scenarios: each breaks one thing under load and brings it back (or, for the rolling
 * restart, replaces every service one after another). Bounds are per scenario: the longest live
 * stall a tenant may see includes the time the broken part takes to come back.
 */
import type { ServiceName } from "@nexus/testkit";
import type { FaultContext, Scenario } from "./harness.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** SIGKILL a service, leave it dead for `downMs`, start it again. */
function killService(s: ServiceName, stallBoundMs: number, extra: Partial<Scenario> = {}, downMs = 1000): Scenario {
  return {
    name: `${s} SIGKILL`,
    stallBoundMs,
    ...extra,
    async fault({ env, log }) {
      await env.stack.stop(s, "SIGKILL");
      log(`${s} killed`);
      await sleep(downMs);
      await env.stack.start(s);
      log(`${s} ready again`);
    },
  };
}

/** The NATS server of a single-node stack stopped with `signal`, down for `downMs`. */
function natsDown(signal: "SIGKILL" | "SIGTERM", downMs = 3000): Scenario {
  return {
    name: `nats-server ${signal}`,
    // Reports published after NATS is back must reach every live client within 5 s.
    stallBoundMs: downMs + 5000,
    async fault({ env, log, recovered }) {
      const nats = env.nats;
      if (!nats) throw new Error("single-node scenario");
      await nats.stop(signal);
      log(`nats-server stopped (${signal})`);
      await sleep(downMs);
      await nats.start();
      recovered("nats");
      log("nats-server back");
    },
  };
}

/** Rolling restart: each service replaced in turn; the gateway by surge (new one first). */
const rolling: Scenario = {
  name: "rolling restart",
  stallBoundMs: 8000,
  maxFailedShare: 0.005,
  sdkMustSucceed: true,
  tailMs: 8000,
  async fault({ env, log }) {
    for (const s of ["stream", "command-worker", "approval-worker"] as const) {
      await env.stack.stop(s, "SIGTERM");
      await env.stack.start(s);
      log(`${s} replaced`);
      await sleep(1000);
    }
    // The gateway: start the new instance, put it in rotation, take the old one out, SIGTERM it.
    const fresh = await env.stack.startReplica("gateway");
    const old = env.lb.backends();
    env.lb.setBackends([...old, fresh.url]);
    await sleep(500);
    env.lb.setBackends([fresh.url]);
    const t0 = Date.now();
    await env.stack.stop("gateway", "SIGTERM");
    log(`old gateway exited ${Date.now() - t0} ms after SIGTERM`);
    // Bring the stack's own gateway back and retire the replica the same way.
    await env.stack.start("gateway");
    env.lb.setBackends([fresh.url, env.stack.gatewayUrl]);
    await sleep(500);
    env.lb.setBackends([env.stack.gatewayUrl]);
    await fresh.stop("SIGTERM");
    log("gateway replaced twice");
  },
};

const postgresKill: Scenario = {
  name: "postgres SIGKILL",
  stallBoundMs: 12_000,
  probePostgres: true,
  async fault({ env, log, recovered }) {
    await env.pg.kill();
    log("postgres killed");
    await sleep(5000);
    await env.pg.start();
    recovered("postgres");
    log("postgres back");
  },
};

const postgresRestart: Scenario = {
  name: "postgres stop/start",
  stallBoundMs: 10_000,
  probePostgres: true,
  async fault({ env, log, recovered }) {
    await env.pg.stop();
    log("postgres stopped");
    await sleep(3000);
    await env.pg.start();
    recovered("postgres");
    log("postgres back");
  },
};

const postgresFreeze: Scenario = {
  name: "postgres SIGSTOP",
  stallBoundMs: 12_000,
  probePostgres: true,
  async fault({ env, log, recovered }) {
    env.pg.freeze();
    log("postgres frozen");
    await sleep(5000);
    env.pg.thaw();
    recovered("postgres");
    log("postgres thawed");
  },
};

/** On the three-node cluster: SIGKILL the node leading NEXUS_REPORTS, restart it after 5 s. */
const clusterLeaderKill: Scenario = {
  name: "cluster: NEXUS_REPORTS leader SIGKILL",
  cluster: true,
  stallBoundMs: 10_000,
  async fault({ env, log, recovered }: FaultContext) {
    const cluster = env.cluster;
    if (!cluster) throw new Error("cluster scenario");
    const info = await env.jsm.streams.info("NEXUS_REPORTS");
    const leader = info.cluster?.leader;
    if (!leader) throw new Error("NEXUS_REPORTS has no leader");
    const leads: string[] = [];
    for (const s of ["NEXUS_COMMANDS", "NEXUS_APPROVALS"]) {
      const i = await env.jsm.streams.info(s).catch(() => undefined);
      if (i?.cluster?.leader === leader) leads.push(s);
    }
    await cluster.node(leader).stop("SIGKILL");
    log(`killed ${leader} (leader of NEXUS_REPORTS${leads.length ? `, ${leads.join(", ")}` : ""})`);
    await sleep(5000);
    await cluster.node(leader).start();
    recovered("nats");
    log(`${leader} back`);
  },
};

/** Every scenario of `pnpm test:chaos`, single-node first. */
export const FULL: Scenario[] = [
  // The killed worker's in-flight commands are redelivered one ack wait (10 s) after their
  // last in-progress ack, to the restarted worker.
  killService("command-worker", 5000, { completionBoundMs: 15_000 }),
  killService("approval-worker", 5000),
  killService("stream", 8000),
  killService("gateway", 8000),
  natsDown("SIGKILL"),
  natsDown("SIGTERM"),
  postgresKill,
  postgresRestart,
  postgresFreeze,
  rolling,
  clusterLeaderKill,
];

/** The short subset that runs in `pnpm test` (one of each kind of fault). */
export const SHORT: Scenario[] = [
  killService("command-worker", 5000, { completionBoundMs: 15_000 }),
  natsDown("SIGKILL"),
  postgresKill,
];

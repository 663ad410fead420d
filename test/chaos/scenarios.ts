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
    restarts: [s],
    ...extra,
    async fault({ env, log, recovered }) {
      await env.stack.stop(s, "SIGKILL");
      log(`${s} killed`);
      await sleep(downMs);
      await env.stack.start(s);
      recovered("service");
      log(`${s} ready again`);
    },
  };
}

/** The NATS server of a single-node stack stopped with `signal`, down for `downMs`. */
function natsDown(signal: "SIGKILL" | "SIGTERM", downMs = 3000): Scenario {
  return {
    name: `nats-server ${signal}`,
    // Nothing is stored while NATS is down: every report reaches every live client within 5 s.
    stallBoundMs: 5000,
    // A job whose nak or in-progress ack died with the server runs again when its ack wait
    // (10 s) ends; the others within seconds.
    backlogBoundMs: 12_000,
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

/** The pause between leaving the rotation and SIGTERM (the Kubernetes manifests use 5 s). */
const PRESTOP_MS = 500;

/**
 * Replaces one service the way a rolling update with surge does: the new instance starts and
 * becomes ready, joins the rotation (the balancer, or the consumer's competing pullers), the
 * old one leaves it and gets SIGTERM. Done twice, so the stack ends as it began.
 */
async function replace(ctx: FaultContext, s: ServiceName): Promise<void> {
  const { env, log } = ctx;
  const lb = s === "gateway" ? env.lb : s === "stream" ? env.streamLb : undefined;
  const own = s === "gateway" ? env.stack.gatewayUrl : env.stack.streamUrl;
  const fresh = await env.stack.startReplica(s);
  lb?.setBackends([own, fresh.url]);
  await sleep(300);
  lb?.setBackends([fresh.url]);
  // Requests the balancer already sent to the old instance finish first (Kubernetes: preStop).
  await sleep(PRESTOP_MS);
  let t0 = Date.now();
  await env.stack.stop(s, "SIGTERM");
  log(`${s}: old instance exited ${Date.now() - t0} ms after SIGTERM`);
  await env.stack.start(s);
  lb?.setBackends([fresh.url, own]);
  await sleep(300);
  lb?.setBackends([own]);
  await sleep(PRESTOP_MS);
  t0 = Date.now();
  await fresh.stop("SIGTERM");
  if (fresh.exitCode() !== 0) throw new Error(`${s} replica exited with ${fresh.exitCode()}`);
  log(`${s}: replica exited ${Date.now() - t0} ms after SIGTERM; replaced twice`);
}

/** Rolling restart of all four services under load. */
const rolling: Scenario = {
  name: "rolling restart",
  restarts: ["gateway", "stream", "command-worker", "approval-worker"],
  stallBoundMs: 5000,
  maxFailedShare: 0.005,
  sdkMustSucceed: true,
  tailMs: 5000,
  async fault(ctx) {
    // No "recovered": nothing is ever down, so every report's stall counts from its storing.
    for (const s of ["stream", "command-worker", "approval-worker", "gateway"] as const) await replace(ctx, s);
  },
};

const postgresKill: Scenario = {
  name: "postgres SIGKILL",
  stallBoundMs: 5000,
  backlogBoundMs: 5000,
  probePostgres: true,
  async fault({ env, log, broke, recovered }) {
    await env.pg.kill();
    broke("postgres");
    log("postgres killed");
    await sleep(5000);
    await env.pg.start();
    recovered("postgres");
    log("postgres back");
  },
};

const postgresRestart: Scenario = {
  name: "postgres stop/start",
  stallBoundMs: 5000,
  backlogBoundMs: 5000,
  probePostgres: true,
  async fault({ env, log, broke, recovered }) {
    await env.pg.stop();
    broke("postgres");
    log("postgres stopped");
    await sleep(3000);
    await env.pg.start();
    recovered("postgres");
    log("postgres back");
  },
};

const postgresFreeze: Scenario = {
  name: "postgres SIGSTOP",
  stallBoundMs: 5000,
  backlogBoundMs: 5000,
  probePostgres: true,
  async fault({ env, log, broke, recovered }) {
    env.pg.freeze();
    broke("postgres");
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
  stallBoundMs: 5000,
  backlogBoundMs: 12_000,
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
  // last in-progress ack, to the restarted worker: done within 15 s of their 202, or of the
  // restart for those accepted before it.
  killService("command-worker", 5000, { completionBoundMs: 15_000 }),
  killService("approval-worker", 5000),
  killService("stream", 5000),
  killService("gateway", 5000),
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

/**
 * The chaos harness: the four services as separate processes on a NATS server (or a local
 * three-node JetStream cluster) and a Postgres of their own, both of which may be killed; a
 * load balancer in front of the gateway; load across several tenants, each with a live SSE
 * client that resumes by `Last-Event-ID`; and the accounting that turns what the clients saw
 * and what JetStream and Postgres hold into one row of figures per scenario.
 *
 * Glossary (the table's columns):
 * - accepted: commands answered 202 (at once, or by repeating an unconfirmed request).
 * - completed: accepted commands whose outcome report exists (`command.completed`, or
 *   `ask.executed` for an approved RED command); failed: `command.failed`.
 * - lost: accepted commands without an outcome once the system is quiet again.
 * - duplicate effects: a command completed twice, an ask executed twice, or two share rows.
 * - exec after 503: a command or decision answered 503 (never repeated) that took effect.
 * - failed requests: first attempts of the raw clients that did not get 202 (any other answer,
 *   or none); SDK failures: calls of the SDK clients (with retries) that ended in an error.
 * - SSE gaps / duplicates / out of order: reports of the tenant (per JetStream) that its live
 *   client never received, received twice, or received after a higher id.
 * - stall: per tenant, the longest time between a report being stored (JetStream timestamp)
 *   and its live client receiving it.
 */
import { randomUUID } from "node:crypto";
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createClient, isNexusApiError } from "@nexus/client";
import { STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { createDb, migrateToLatest } from "@nexus/core";
import {
  authorizationConfig,
  connectNats,
  NATS_USERS,
  type NatsUser,
  provisionTopology,
  type TopologyOptions,
} from "@nexus/messaging";
import {
  type NatsCluster,
  natsForTest,
  type PostgresServer,
  type ServiceName,
  type Stack,
  spawnNatsCluster,
  spawnPostgres,
  startStack,
  TEST_TOPOLOGY,
  type TestNats,
  type TestNatsUsers,
  tenantHeaders,
  waitFor,
  withDatabase,
} from "@nexus/testkit";
import { createParser } from "eventsource-parser";
import pg from "pg";
import { pino } from "pino";
import { type Balancer, startBalancer } from "./balancer.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Options of {@link startChaosEnv}. */
export interface ChaosEnvOptions {
  /** A local three-node R3 JetStream cluster instead of one server. */
  cluster?: boolean;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Where service logs go (default: a temporary directory). */
  logDir?: string;
}

/** Everything a scenario may break, and how to reach it. */
export interface ChaosEnv {
  kind: "single" | "cluster";
  natsUrl: string;
  /** The single server (kind `single`). */
  nats?: TestNats;
  /** The cluster (kind `cluster`). */
  cluster?: NatsCluster;
  pg: PostgresServer;
  databaseUrl: string;
  /** The harness's own pool on the services' database (checks only). */
  db: ReturnType<typeof createDb>;
  /** The harness's own NATS connection (provisioning user: reads every stream). */
  nc: NatsConnection;
  jsm: JetStreamManager;
  stack: Stack;
  /** The balancer the clients talk to; its backends are the gateway instances. */
  lb: Balancer;
  /** The balancer the gateways proxy the report stream to (`STREAM_URL`); its backends are the stream instances. */
  streamLb: Balancer;
  /** Waits until every service answers /ready 200 (and the balancer has a gateway). */
  ready(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The topology the chaos stacks run on: retention large enough that no cursor expires. */
export const CHAOS_TOPOLOGY: Partial<TopologyOptions> = {
  streamEventKeep: 50_000,
  consumerAckWaitMs: 10_000,
};

function testUsers(): TestNatsUsers {
  return Object.fromEntries(
    NATS_USERS.map((u) => [u, { user: u, password: randomUUID().replace(/-/g, "") }]),
  ) as TestNatsUsers;
}

/** Starts NATS (one server or a cluster), Postgres, the four services and the balancer. */
export async function startChaosEnv(o: ChaosEnvOptions = {}): Promise<ChaosEnv> {
  const topology = { ...TEST_TOPOLOGY, ...CHAOS_TOPOLOGY, replicas: o.cluster ? 3 : 1 };
  let nats: TestNats | undefined;
  let cluster: NatsCluster | undefined;
  let users: TestNatsUsers;
  let natsUrl: string;
  if (o.cluster) {
    users = testUsers();
    const authorization = authorizationConfig(
      Object.fromEntries(NATS_USERS.map((u) => [u, { password: users[u as NatsUser].password }])),
    );
    cluster = await spawnNatsCluster({ size: 3, authorization });
    natsUrl = cluster.url;
  } else {
    nats = await natsForTest(topology, { auth: true });
    if (!nats.users || !nats.own) throw new Error("the chaos suite needs a nats-server binary");
    users = nats.users;
    natsUrl = nats.url;
  }
  const logger = pino({ level: "silent" });
  const nc = await connectNats({
    url: natsUrl,
    name: "chaos-harness",
    logger,
    timeoutMs: 20_000,
    auth: { user: users.provision.user, password: users.provision.password },
  });
  // On a fresh cluster JetStream answers once a meta leader is elected: no API check here.
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  if (cluster) {
    // The cluster needs a meta leader before streams can be created.
    await waitFor(
      async () => {
        await provisionTopology(jsm, topology, logger);
        return true;
      },
      60_000,
      "provisioning the cluster",
    );
  }

  const pgServer = await spawnPostgres();
  const admin = new pg.Client({ connectionString: pgServer.url });
  await admin.connect();
  await admin.query("create database nexus");
  await admin.end();
  const databaseUrl = withDatabase(pgServer.url, "nexus");
  const db = createDb({ url: databaseUrl, max: 4, applicationName: "chaos-harness" });
  await migrateToLatest(db);

  // The gateways reach the stream service through a balancer too, so that a stream instance can
  // be replaced without a gap in service (its backend is set once the stack is up).
  const streamLb = await startBalancer([]);
  const stack = await startStack({
    natsUrl,
    databaseUrl,
    natsUsers: users,
    ...(o.logDir ? { logDir: o.logDir } : {}),
    env: {
      SSE_HEARTBEAT_MS: "1000",
      STREAM_EVENT_KEEP: String(topology.streamEventKeep),
      STREAM_REPLICAS: String(topology.replicas),
      CONSUMER_ACK_WAIT_MS: String(topology.consumerAckWaitMs),
      RATE_LIMIT_PER_MINUTE: "1000000",
      STREAM_URL: streamLb.url,
      ...o.env,
    },
  });
  streamLb.setBackends([stack.streamUrl]);
  const lb = await startBalancer([stack.gatewayUrl]);

  const env: ChaosEnv = {
    kind: cluster ? "cluster" : "single",
    natsUrl,
    ...(nats ? { nats } : {}),
    ...(cluster ? { cluster } : {}),
    pg: pgServer,
    databaseUrl,
    db,
    nc,
    jsm,
    stack,
    lb,
    streamLb,
    async ready(timeoutMs = 30_000) {
      const urls = [
        ...lb.backends(),
        ...streamLb.backends(),
        `http://127.0.0.1:${stack.ports["command-worker"]}`,
        `http://127.0.0.1:${stack.ports["approval-worker"]}`,
      ];
      await waitFor(
        async () => {
          for (const u of urls) if ((await fetch(`${u}/ready`)).status !== 200) return false;
          return true;
        },
        timeoutMs,
        "every service /ready",
      );
    },
    async close() {
      await lb.close().catch(() => {});
      await stack.close().catch(() => {});
      await streamLb.close().catch(() => {});
      await db.destroy().catch(() => {});
      await nc.close().catch(() => {});
      await pgServer.destroy().catch(() => {});
      if (nats) await nats.stop().catch(() => {});
      if (cluster) await cluster.stop().catch(() => {});
    },
  };
  return env;
}

// ---------------------------------------------------------------------------------------------
// The live SSE client of one tenant

/** One report as the live client received it. */
interface Received {
  id: number;
  at: number;
  type: string;
  commandId?: string;
  askId?: string;
}

/**
 * A live client of the report stream that resumes by `Last-Event-ID` whenever its connection
 * ends (after `reconnectMs`), like EventSource, and gives up on a connection that sent nothing,
 * not even a `ping`, for `watchdogMs`.
 */
export class LiveClient {
  readonly received: Received[] = [];
  readonly seen = new Map<number, number>();
  /** The snapshot id of the first connection: reports above it are expected. */
  startId: number | undefined;
  lastId: number | undefined;
  connections = 0;
  duplicates = 0;
  outOfOrder = 0;
  readonly errors: Record<string, number> = {};
  private stopped = false;
  private ac: AbortController | undefined;
  private readonly waiters = new Set<() => void>();
  private loop: Promise<void> | undefined;

  readonly baseUrl: string;
  readonly tenant: Tenant;
  private readonly o: { reconnectMs?: number; watchdogMs?: number };

  constructor(baseUrl: string, tenant: Tenant, o: { reconnectMs?: number; watchdogMs?: number } = {}) {
    this.baseUrl = baseUrl;
    this.tenant = tenant;
    this.o = o;
  }

  /** Connects; resolves once the first snapshot arrived. */
  async start(): Promise<void> {
    this.loop = this.run();
    await waitFor(() => this.startId !== undefined, 30_000, `snapshot for ${this.tenant.org_id}`);
  }

  /** The report of `type` about `commandId`, once received. */
  find(type: string, commandId: string): Received | undefined {
    return this.received.find((r) => r.type === type && r.commandId === commandId);
  }

  /** Resolves when `pred` holds (checked on every report), or undefined after `timeoutMs`. */
  async waitFor<T>(pred: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0 || this.stopped) return undefined;
      await new Promise<void>((r) => {
        const t = setTimeout(done, Math.min(left, 500));
        function done() {
          clearTimeout(t);
          r();
        }
        this.waiters.add(done);
      });
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.connectOnce().catch(() => {});
      if (this.stopped) break;
      await sleep(this.o.reconnectMs ?? 250);
    }
  }

  private async connectOnce(): Promise<void> {
    const ac = new AbortController();
    this.ac = ac;
    const headers: Record<string, string> = { accept: "text/event-stream", ...tenantHeaders(this.tenant) };
    if (this.lastId !== undefined) headers["last-event-id"] = String(this.lastId);
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ac.abort(), this.o.watchdogMs ?? 5000);
    };
    arm();
    try {
      const res = await fetch(`${this.baseUrl}/agent/reports/stream`, { headers, signal: ac.signal });
      if (!res.ok || !res.body) {
        this.errors[`http_${res.status}`] = (this.errors[`http_${res.status}`] ?? 0) + 1;
        await res.body?.cancel().catch(() => {});
        return;
      }
      this.connections++;
      const parser = createParser({
        onEvent: (m) => {
          arm();
          if (m.event === "snapshot") {
            const id = Number(m.id);
            if (this.startId === undefined) this.startId = id;
            if (this.lastId === undefined || id > this.lastId) this.lastId = id;
          } else if (m.event === "report") {
            const id = Number(m.id);
            const data = JSON.parse(m.data);
            const n = (this.seen.get(id) ?? 0) + 1;
            this.seen.set(id, n);
            if (n > 1) this.duplicates++;
            else if (this.lastId !== undefined && id <= this.lastId) this.outOfOrder++;
            if (n === 1)
              this.received.push({
                id,
                at: Date.now(),
                type: data.report?.type,
                commandId: data.causality?.command_id,
                askId: data.causality?.ask_id ?? data.report?.ask?.ask_id,
              });
            if (this.lastId === undefined || id > this.lastId) this.lastId = id;
            for (const w of [...this.waiters]) {
              this.waiters.delete(w);
              w();
            }
          } else if (m.event === "error") {
            const code = (() => {
              try {
                return JSON.parse(m.data).error?.code ?? "error";
              } catch {
                return "error";
              }
            })();
            this.errors[code] = (this.errors[code] ?? 0) + 1;
          }
        },
      });
      const dec = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        parser.feed(dec.decode(chunk, { stream: true }));
      }
    } finally {
      clearTimeout(watchdog);
      ac.abort();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ac?.abort();
    for (const w of this.waiters) w();
    await this.loop;
  }
}

// ---------------------------------------------------------------------------------------------
// Load

/** How one command ended from its client's point of view. */
interface CommandRecord {
  id: string;
  tenant: Tenant;
  red: boolean;
  /** raw: one attempt (503 is final; an unconfirmed answer is resolved by repeating); sdk: `@nexus/client` with retries. */
  mode: "raw" | "sdk";
  /** The first attempt's answer: an HTTP status, or `neterr`. */
  first: string;
  /** SDK clients: the error code a failed call ended with. */
  sdkError?: string;
  firstMs: number;
  /** When the 202 arrived (ms since the epoch). */
  acceptedAt?: number;
  final: "accepted" | "refused" | "failed" | "unresolved" | "pending";
  askId?: string;
  /** RED: what became of the approval (`approved`, `refused` = answered 503 and not repeated, `failed`, `no_ask`). */
  decision?: "approved" | "refused" | "failed" | "no_ask";
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** Commands per second per tenant. */
  ratePerTenant: number;
  /** Share of RED commands (external_share.prepare, approved by the load). */
  redShare: number;
  /** Most commands of one tenant in flight at once; beyond it a tick is skipped. */
  maxInFlight: number;
}

const SHARE = { recipient: "partner@example.org", channel: "email", resource: { ref: "doc:1", title: "Q3" } };

/** An HTTP answer, or (status 0) none: `neverSent` when the connection was refused. */
interface Answer {
  status: number;
  body?: { error?: { code?: string } } | string;
  ms: number;
  error?: string;
  neverSent?: boolean;
}

async function post(url: string, tenant: Tenant, body: unknown, timeoutMs = 15_000): Promise<Answer> {
  const t0 = Date.now();
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...tenantHeaders(tenant) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: Answer["body"] = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, body: parsed, ms: Date.now() - t0 };
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code;
    return { status: 0, error: code ?? (err as Error).name, neverSent: code === "ECONNREFUSED", ms: Date.now() - t0 };
  }
}

/** The load of one tenant: its commands, its live client, its approvals. */
export class TenantLoad {
  readonly commands: CommandRecord[] = [];
  readonly live: LiveClient;
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly sdk;
  skipped = 0;
  private stopping = false;

  readonly env: ChaosEnv;
  readonly tenant: Tenant;
  readonly mode: "raw" | "sdk";
  private readonly o: LoadOptions;

  constructor(env: ChaosEnv, tenant: Tenant, mode: "raw" | "sdk", o: LoadOptions) {
    this.env = env;
    this.tenant = tenant;
    this.mode = mode;
    this.o = o;
    this.live = new LiveClient(env.lb.url, tenant);
    this.sdk = createClient({
      baseUrl: env.lb.url,
      auth: { mode: "headers", tenant },
      retry: { maxAttempts: 12, baseDelayMs: 200, maxDelayMs: 2000, attemptTimeoutMs: 15_000 },
    });
  }

  async start(): Promise<void> {
    await this.live.start();
    const every = 1000 / this.o.ratePerTenant;
    this.timer = setInterval(() => {
      if (this.stopping) return;
      if (this.inFlight.size >= this.o.maxInFlight) {
        this.skipped++;
        return;
      }
      const p = this.one().catch(() => {});
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    }, every);
  }

  /** Stops sending; resolves once every command in flight has its answer (and its decision). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
  }

  private commandBody(red: boolean) {
    const id = randomUUID();
    return red
      ? {
          command_id: id,
          type: "external_share.prepare",
          params: SHARE,
          client_context: { surface: "chaos", correlation_id: `c-${id.slice(0, 8)}` },
        }
      : {
          command_id: id,
          type: "echo.test",
          params: { n: this.commands.length },
          client_context: { surface: "chaos", correlation_id: `c-${id.slice(0, 8)}` },
        };
  }

  private async one(): Promise<void> {
    const red = Math.random() < this.o.redShare;
    const body = this.commandBody(red);
    const rec: CommandRecord = {
      id: body.command_id,
      tenant: this.tenant,
      red,
      mode: this.mode,
      first: "",
      firstMs: 0,
      final: "pending",
    };
    this.commands.push(rec);
    const url = `${this.env.lb.url}/sidecar/command`;
    if (this.mode === "raw") {
      const a = await post(url, this.tenant, body);
      rec.first = a.status === 0 ? "neterr" : String(a.status);
      rec.firstMs = a.ms;
      if (a.status === 202) rec.final = "accepted";
      else if (a.status === 503 || (a.status === 0 && a.neverSent)) rec.final = "refused";
      else if (a.status === 0 || a.status === 502 || a.status === 504 || a.status === 500)
        rec.final = (await this.resolve(url, body)) ? "accepted" : "unresolved";
      else rec.final = "failed";
      if (rec.final === "accepted") rec.acceptedAt = Date.now();
    } else {
      const t0 = Date.now();
      let attempts = 0;
      try {
        await this.sdk.sendCommand(body as never);
        rec.final = "accepted";
      } catch (err) {
        if (isNexusApiError(err) && err.code === "ACCEPT_UNCONFIRMED")
          rec.final = (await this.resolve(url, body)) ? "accepted" : "unresolved";
        else rec.final = "failed";
        attempts = isNexusApiError(err) ? err.attempts : 0;
        if (rec.final === "failed") rec.sdkError = isNexusApiError(err) ? err.code : String(err);
      }
      if (rec.final === "accepted") rec.acceptedAt = Date.now();
      rec.first = rec.final === "accepted" ? "202" : `sdk:${attempts}`;
      rec.firstMs = Date.now() - t0;
    }
    if (red && rec.final === "accepted") await this.approve(rec);
  }

  /** Repeats an unconfirmed request (same body) until it is answered 202 or 409, for up to 90 s. */
  private async resolve(url: string, body: unknown): Promise<boolean> {
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      await sleep(300 + Math.random() * 400);
      const a = await post(url, this.tenant, body);
      if (a.status === 202) return true;
      if (a.status === 409) return false;
    }
    return false;
  }

  /** Waits for the ask of a RED command on the live client, then approves it. */
  private async approve(rec: CommandRecord): Promise<void> {
    const created = await this.live.waitFor(() => this.live.find("ask.created", rec.id), 90_000);
    if (!created?.askId) {
      rec.decision = "no_ask";
      return;
    }
    rec.askId = created.askId;
    const url = `${this.env.lb.url}/approvals/${created.askId}/decide`;
    const body = { decision: "approve", correlation_id: `d-${created.askId}` };
    if (this.mode === "raw") {
      const a = await post(url, this.tenant, body);
      if (a.status === 202) rec.decision = "approved";
      else if (a.status === 503 || (a.status === 0 && a.neverSent)) rec.decision = "refused";
      else rec.decision = (await this.resolveDecision(url, body)) ? "approved" : "failed";
    } else {
      try {
        await this.sdk.decide(created.askId, body as never);
        rec.decision = "approved";
      } catch {
        rec.decision = (await this.resolveDecision(url, body)) ? "approved" : "failed";
      }
    }
  }

  private async resolveDecision(url: string, body: unknown): Promise<boolean> {
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      await sleep(300 + Math.random() * 400);
      const a = await post(url, this.tenant, body);
      if (a.status === 202) return true;
      if (a.status === 409) return typeof a.body === "object" && a.body.error?.code === "ASK_ALREADY_DECIDED";
    }
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// What JetStream and Postgres hold

/** A stored report with its JetStream timestamp. */
interface StoredReport {
  seq: number;
  storedAt: number;
  type: string;
  commandId?: string;
  askId?: string;
}

/** Every retained report of a tenant, in order, with its storage time (ms since the epoch). */
export async function storedReports(env: ChaosEnv, t: Tenant): Promise<StoredReport[]> {
  const js = jetstream(env.nc);
  const { DeliverPolicy } = await import("@nats-io/jetstream");
  const c = await js.consumers.get(STREAMS.reports, {
    filter_subjects: subjects.report(t),
    deliver_policy: DeliverPolicy.All,
  });
  const out: StoredReport[] = [];
  try {
    let pending = (await c.info(true)).num_pending;
    while (pending > 0) {
      let read = 0;
      const it = await c.fetch({ max_messages: Math.min(pending, 256), expires: 5000 });
      for await (const m of it) {
        read++;
        pending = m.info.pending;
        const d = m.json() as {
          report?: { type?: string; ask?: { ask_id?: string } };
          causality?: { command_id?: string; ask_id?: string };
        };
        out.push({
          seq: m.seq,
          storedAt: Math.floor(Number(m.info.timestampNanos) / 1e6),
          type: d.report?.type ?? "?",
          commandId: d.causality?.command_id,
          askId: d.causality?.ask_id ?? d.report?.ask?.ask_id,
        });
      }
      if (read === 0) break;
    }
  } finally {
    await c.delete().catch(() => {});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/** What a scenario's fault function may use. */
export interface FaultContext {
  env: ChaosEnv;
  log(msg: string): void;
  /** Marks the moment a dependency broke (for the outage measurements). */
  broke(what: "postgres" | "nats"): void;
  /** Marks the moment what was broken is back (for the recovery measurements). */
  recovered(what: "postgres" | "nats" | "service"): void;
}

/** One chaos scenario. */
export interface Scenario {
  name: string;
  /** Runs on the cluster environment. */
  cluster?: boolean;
  /**
   * Longest live stall allowed per tenant once what was broken is back, ms: for a report stored
   * before then, counted from the moment it was back (it could not be delivered earlier).
   */
  stallBoundMs: number;
  /** Load before the fault, ms (default 4000). */
  warmupMs?: number;
  /** Load after the fault, ms (default 6000). */
  tailMs?: number;
  /** Probe a Postgres-backed route during the scenario and check the 503/recovery bounds. */
  probePostgres?: boolean;
  /** Fail when more than this share of the raw clients' first attempts did not get 202 (default: no bound). */
  maxFailedShare?: number;
  /** Fail when any SDK call ends in an error. */
  sdkMustSucceed?: boolean;
  /**
   * Fail when an accepted command's outcome is stored later than this after its 202 or, for a
   * command accepted before what was broken was back, after that moment, ms. A killed worker's
   * jobs come back one ack wait after their last in-progress ack, which is at most the kill; a
   * job accepted while no worker ran cannot start before one runs again. Counting from the
   * 202 alone, a restart slowed by a loaded machine (9 s instead of 2) failed the bound.
   */
  completionBoundMs?: number;
  /** Fail when the commands accepted before a dependency came back finish later than this after it, ms. */
  backlogBoundMs?: number;
  /** The services the fault stops on purpose; every other one must still run the same process. */
  restarts?: ServiceName[];
  fault(ctx: FaultContext): Promise<void>;
}

/** The figures of one scenario run (one row of the table). */
export interface ScenarioResult {
  scenario: string;
  run: number;
  durationMs: number;
  sent: number;
  accepted: number;
  completed: number;
  failed: number;
  lost: number;
  duplicateEffects: number;
  execAfter503: number;
  refused: number;
  /** First attempts of raw clients that did not get 202, and their number. */
  failedRequests: number;
  rawRequests: number;
  /** The raw clients' first answers other than 202, by status (`neterr`: none). */
  failedByStatus: Record<string, number>;
  /** The SDK clients' final errors, by code. */
  sdkErrors: Record<string, number>;
  sdkFailed: number;
  unresolved: number;
  /** RED commands whose ask was approved, and how many of those asks were executed (once). */
  asksApproved: number;
  asksExecuted: number;
  /** Slowest first answer of a raw client, ms. */
  maxAnswerMs: number;
  /** Longest time from a command's 202 to its outcome being stored, ms. */
  maxCompletionMs: number;
  /** The same, counted from when what was broken was back for commands accepted before then (see {@link Scenario.completionBoundMs}), ms. */
  maxCompletionAfterBackMs: number;
  sseGaps: number;
  sseDuplicates: number;
  sseOutOfOrder: number;
  reconnects: number;
  /** Per tenant, the longest live stall, ms. */
  stallsMs: number[];
  /** The longest live stall counted from the moment what was broken was back (see {@link Scenario.stallBoundMs}), ms. */
  stallAfterBackMs: number;
  /** Postgres probe: slowest answer while Postgres was down, and time to the first success after it came back, ms. */
  pgDownMaxMs?: number;
  pgRecoveryMs?: number;
  /** After a dependency came back: when the last command accepted before then had its outcome, ms. */
  backlogMs?: number;
  failures: string[];
}

/** Options of {@link runScenario}. */
export interface RunOptions {
  tenants?: number;
  load?: Partial<LoadOptions>;
  run?: number;
  log?: (msg: string) => void;
}

/** Runs one scenario on `env` with fresh tenants and returns its figures. */
export async function runScenario(env: ChaosEnv, s: Scenario, o: RunOptions = {}): Promise<ScenarioResult> {
  const t0 = Date.now();
  const log =
    o.log ?? ((m: string) => console.log(`[chaos ${s.name} +${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`));
  await env.ready(60_000);
  const load: LoadOptions = { ratePerTenant: 6, redShare: 0.1, maxInFlight: 40, ...o.load };
  const tenants = Array.from({ length: o.tenants ?? 4 }, (_, i) => ({
    org_id: `chaos-${randomUUID().slice(0, 8)}`,
    project_id: `p${i}`,
  }));
  const loads = tenants.map((t, i) => new TenantLoad(env, t, i % 2 === 0 ? "raw" : "sdk", load));
  await Promise.all(loads.map((l) => l.start()));

  // The Postgres probe: a read that needs Postgres (404 while it answers, 503 while it does not).
  let probing = true;
  let pgDown: number | undefined;
  let pgBack: number | undefined;
  let pgDownMaxMs = 0;
  let pgRecoveryMs: number | undefined;
  /** Answers of the probe while Postgres was down, by status. */
  const pgDownStatuses: Record<number, number> = {};
  const probe = (async () => {
    if (!s.probePostgres) return;
    while (probing) {
      const started = Date.now();
      let status = 0;
      try {
        const r = await fetch(`${env.lb.url}/profile/photo`, {
          headers: tenantHeaders(tenants[0] as Tenant),
          signal: AbortSignal.timeout(15_000),
        });
        status = r.status;
        await r.arrayBuffer();
      } catch {}
      const ms = Date.now() - started;
      const ok = status === 404 || status === 200;
      // Requests sent while Postgres was down (not those answered by a Postgres that had just died).
      if (pgDown !== undefined && pgBack === undefined && started > pgDown + 100) {
        pgDownMaxMs = Math.max(pgDownMaxMs, ms);
        pgDownStatuses[status] = (pgDownStatuses[status] ?? 0) + 1;
      }
      if (pgBack !== undefined && pgRecoveryMs === undefined && ok) pgRecoveryMs = Date.now() - pgBack;
      await sleep(200);
    }
  })();

  const SERVICES: ServiceName[] = ["gateway", "stream", "command-worker", "approval-worker"];
  const pidsBefore = Object.fromEntries(SERVICES.map((x) => [x, env.stack.pid(x)]));
  let backAt: number | undefined;
  await sleep(s.warmupMs ?? 4000);
  log("fault");
  await s.fault({
    env,
    log,
    broke(what) {
      if (what === "postgres") pgDown = Date.now();
    },
    recovered(what) {
      backAt = Date.now();
      if (what === "postgres") pgBack = Date.now();
    },
  });
  if (s.probePostgres && pgBack === undefined) pgBack = Date.now();
  log("recovered; tail load");
  await sleep(s.tailMs ?? 6000);
  await Promise.all(loads.map((l) => l.stop()));
  probing = false;
  await probe;
  log("load stopped; settling");
  await env.ready(60_000).catch((err) => log(`not ready: ${(err as Error).message}`));

  // Settle: every accepted command reaches its outcome, then every live client catches up.
  const outcome = (rs: StoredReport[], c: CommandRecord) => {
    if (c.red) {
      if (c.decision !== "approved") return true;
      return rs.some((r) => r.type === "ask.executed" && r.askId === c.askId);
    }
    return rs.some((r) => r.commandId === c.id && (r.type === "command.completed" || r.type === "command.failed"));
  };
  const stored = new Map<Tenant, StoredReport[]>();
  const deadline = Date.now() + 90_000;
  for (const l of loads) {
    for (;;) {
      const rs = await storedReports(env, l.tenant).catch(() => [] as StoredReport[]);
      stored.set(l.tenant, rs);
      const open = l.commands.filter((c) => c.final === "accepted" && !outcome(rs, c));
      if (open.length === 0 || Date.now() > deadline) break;
      await sleep(1000);
    }
  }
  for (const l of loads) {
    const rs = stored.get(l.tenant) ?? [];
    const last = rs.at(-1)?.seq ?? 0;
    await waitFor(() => (l.live.lastId ?? 0) >= last, 30_000, "live client catch-up").catch(() => {});
    await l.live.stop();
  }

  // Accounting.
  const r: ScenarioResult = {
    scenario: s.name,
    run: o.run ?? 1,
    durationMs: 0,
    sent: 0,
    accepted: 0,
    completed: 0,
    failed: 0,
    lost: 0,
    duplicateEffects: 0,
    execAfter503: 0,
    refused: 0,
    failedRequests: 0,
    rawRequests: 0,
    failedByStatus: {},
    sdkErrors: {},
    asksApproved: 0,
    asksExecuted: 0,
    sdkFailed: 0,
    unresolved: 0,
    maxAnswerMs: 0,
    maxCompletionMs: 0,
    maxCompletionAfterBackMs: 0,
    sseGaps: 0,
    sseDuplicates: 0,
    sseOutOfOrder: 0,
    reconnects: 0,
    stallsMs: [],
    stallAfterBackMs: 0,
    failures: [],
  };
  const refusedIds: string[] = [];
  /** Records a command's completion: from its 202, and from when the fault was over if it came earlier. */
  const completion = (acceptedAt: number, storedAt: number) => {
    r.maxCompletionMs = Math.max(r.maxCompletionMs, storedAt - acceptedAt);
    const from = backAt !== undefined && acceptedAt < backAt ? backAt : acceptedAt;
    r.maxCompletionAfterBackMs = Math.max(r.maxCompletionAfterBackMs, storedAt - from);
  };
  for (const l of loads) {
    const rs = stored.get(l.tenant) ?? [];
    const byCommand = new Map<string, StoredReport[]>();
    for (const x of rs) if (x.commandId) byCommand.set(x.commandId, [...(byCommand.get(x.commandId) ?? []), x]);
    for (const c of l.commands) {
      r.sent++;
      if (c.mode === "raw") {
        r.maxAnswerMs = Math.max(r.maxAnswerMs, c.firstMs);
        r.rawRequests++;
        if (c.first !== "202") {
          r.failedRequests++;
          r.failedByStatus[c.first] = (r.failedByStatus[c.first] ?? 0) + 1;
        }
      } else if (c.final !== "accepted") {
        r.sdkFailed++;
        const code = c.sdkError ?? c.final;
        r.sdkErrors[code] = (r.sdkErrors[code] ?? 0) + 1;
      }
      if (c.final === "unresolved") r.unresolved++;
      const mine = byCommand.get(c.id) ?? [];
      if (c.final === "refused") {
        r.refused++;
        refusedIds.push(c.id);
        if (mine.length > 0) r.execAfter503++;
        continue;
      }
      if (c.final !== "accepted") continue;
      r.accepted++;
      const count = (type: string) => mine.filter((x) => x.type === type).length;
      if (c.red) {
        if (c.decision === "refused") {
          // A decision answered 503 and never repeated must not take effect.
          if (rs.some((x) => x.askId === c.askId && (x.type === "ask.decided" || x.type === "ask.executed")))
            r.execAfter503++;
          r.completed++; // the command itself is done: it is an ask waiting for a decision
          continue;
        }
        const executions = rs.filter((x) => x.askId && x.askId === c.askId && x.type === "ask.executed");
        const executed = executions.length;
        if (c.decision === "approved") r.asksApproved++;
        if (c.decision === "approved" && executed === 1) r.asksExecuted++;
        if (executions[0] && c.acceptedAt) completion(c.acceptedAt, (executions[0] as StoredReport).storedAt);
        if (executed > 1) r.duplicateEffects++;
        if (executed >= 1) r.completed++;
        else if (c.decision === "approved") r.lost++;
        else r.failed++; // no ask, or its decision failed
      } else {
        const completed = count("command.completed");
        const failed = count("command.failed");
        const end = mine.find((x) => x.type === "command.completed" || x.type === "command.failed");
        if (end && c.acceptedAt) completion(c.acceptedAt, end.storedAt);
        if (end && c.acceptedAt && backAt !== undefined && c.acceptedAt < backAt)
          r.backlogMs = Math.max(r.backlogMs ?? 0, end.storedAt - backAt);
        if (completed > 1 || failed > 1 || (completed && failed)) r.duplicateEffects++;
        if (completed) r.completed++;
        else if (failed) r.failed++;
        else r.lost++;
      }
    }
    // SSE: every report stored after the live client's snapshot must have reached it, once, in order.
    const expected = rs.filter((x) => x.seq > (l.live.startId ?? 0));
    let stall = 0;
    for (const x of expected) {
      const got = l.live.received.find((y) => y.id === x.seq);
      if (!got) r.sseGaps++;
      else {
        stall = Math.max(stall, got.at - x.storedAt);
        const from = backAt !== undefined && x.storedAt < backAt ? Math.max(x.storedAt, backAt) : x.storedAt;
        r.stallAfterBackMs = Math.max(r.stallAfterBackMs, got.at - from);
      }
    }
    r.sseDuplicates += l.live.duplicates;
    r.sseOutOfOrder += l.live.outOfOrder;
    r.reconnects += Math.max(0, l.live.connections - 1);
    r.stallsMs.push(stall);
  }
  // Shares executed twice, and rows of commands answered 503.
  const askIds = loads.flatMap((l) => l.commands.filter((c) => c.askId).map((c) => c.askId as string));
  if (askIds.length) {
    const rows = await env.db
      .selectFrom("share_outbox")
      .select(["ask_id"])
      .where("ask_id", "in", askIds)
      .execute()
      .catch(() => []);
    const n = new Map<string, number>();
    for (const x of rows) n.set(x.ask_id, (n.get(x.ask_id) ?? 0) + 1);
    for (const v of n.values()) if (v > 1) r.duplicateEffects++;
  }
  if (refusedIds.length) {
    const rows = await env.db
      .selectFrom("commands")
      .select(["command_id"])
      .where("command_id", "in", refusedIds)
      .execute()
      .catch(() => []);
    r.execAfter503 += rows.length;
  }
  if (s.probePostgres) {
    const other = Object.entries(pgDownStatuses).filter(([st]) => st !== "503");
    if (other.length)
      r.failures.push(
        `Postgres-backed requests during the outage answered ${other.map(([st, n]) => `${n}× ${st}`).join(", ")} (not 503)`,
      );
    r.pgDownMaxMs = pgDownMaxMs;
    if (pgRecoveryMs !== undefined) r.pgRecoveryMs = pgRecoveryMs;
  }
  r.durationMs = Date.now() - t0;

  for (const x of SERVICES) {
    if (s.restarts?.includes(x)) continue;
    const pid = env.stack.pid(x);
    let running = pid !== undefined;
    try {
      if (pid !== undefined) process.kill(pid, 0);
    } catch {
      running = false;
    }
    if (!running || pid !== pidsBefore[x]) r.failures.push(`${x} crashed`);
  }
  if (r.lost) r.failures.push(`${r.lost} accepted commands lost`);
  if (r.duplicateEffects) r.failures.push(`${r.duplicateEffects} duplicate effects`);
  if (r.execAfter503) r.failures.push(`${r.execAfter503} executions after a 503`);
  if (r.failed) r.failures.push(`${r.failed} commands failed`);
  if (r.unresolved) r.failures.push(`${r.unresolved} unconfirmed requests never resolved`);
  if (r.sseGaps) r.failures.push(`${r.sseGaps} reports never reached a live client`);
  if (r.sseDuplicates) r.failures.push(`${r.sseDuplicates} reports delivered twice`);
  if (r.sseOutOfOrder) r.failures.push(`${r.sseOutOfOrder} reports out of order`);
  // PUBLISH_TIMEOUT_MS (5 s) is the longest a command may wait for its PubAck.
  if (r.maxAnswerMs > 7000) r.failures.push(`a request waited ${r.maxAnswerMs} ms (hang)`);
  if (s.completionBoundMs !== undefined && r.maxCompletionAfterBackMs > s.completionBoundMs)
    r.failures.push(
      `a command completed ${r.maxCompletionAfterBackMs} ms after its 202 or the fault's end (> ${s.completionBoundMs} ms)`,
    );
  if (s.backlogBoundMs !== undefined && (r.backlogMs ?? 0) > s.backlogBoundMs)
    r.failures.push(`the backlog was done ${r.backlogMs} ms after the dependency came back (> ${s.backlogBoundMs} ms)`);
  if (r.stallAfterBackMs > s.stallBoundMs)
    r.failures.push(`live stall ${r.stallAfterBackMs} ms after the fault was over > ${s.stallBoundMs} ms`);
  if (s.maxFailedShare !== undefined && r.failedRequests > s.maxFailedShare * r.rawRequests)
    r.failures.push(`${r.failedRequests}/${r.rawRequests} requests failed (> ${s.maxFailedShare * 100}%)`);
  if (s.sdkMustSucceed && r.sdkFailed) r.failures.push(`${r.sdkFailed} SDK calls failed after retries`);
  if (s.probePostgres) {
    if (r.pgDownMaxMs !== undefined && r.pgDownMaxMs > 2500)
      r.failures.push(`a Postgres-backed request took ${r.pgDownMaxMs} ms during the outage`);
    if (r.pgRecoveryMs === undefined || r.pgRecoveryMs > 2500)
      r.failures.push(`Postgres-backed requests recovered after ${r.pgRecoveryMs ?? "never"} ms`);
  }
  if (r.accepted === 0) r.failures.push("nothing was accepted");
  return r;
}

// ---------------------------------------------------------------------------------------------
// The table

/** ` (a:1 b:2)`, or nothing for an empty count. */
function breakdown(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([k, v]) => `${k}:${v}`);
  return parts.length ? ` (${parts.join(" ")})` : "";
}

const COLUMNS: [string, (r: ScenarioResult) => string][] = [
  ["scenario", (r) => r.scenario],
  ["run", (r) => String(r.run)],
  ["sent", (r) => String(r.sent)],
  ["accepted", (r) => String(r.accepted)],
  ["completed", (r) => String(r.completed)],
  ["lost", (r) => String(r.lost)],
  ["asks executed", (r) => `${r.asksExecuted}/${r.asksApproved}`],
  ["dup effects", (r) => String(r.duplicateEffects)],
  ["503 then ran", (r) => String(r.execAfter503)],
  [
    "failed req (raw)",
    (r) =>
      `${r.failedRequests}/${r.rawRequests} (${((100 * r.failedRequests) / Math.max(1, r.rawRequests)).toFixed(1)}%)${breakdown(r.failedByStatus)}`,
  ],
  ["SDK failed", (r) => `${r.sdkFailed}${breakdown(r.sdkErrors)}`],
  ["max answer ms", (r) => String(r.maxAnswerMs)],
  ["max completion s", (r) => (r.maxCompletionMs / 1000).toFixed(1)],
  ["backlog done s", (r) => (r.backlogMs === undefined ? "" : (r.backlogMs / 1000).toFixed(1))],
  ["SSE gaps", (r) => String(r.sseGaps)],
  ["SSE dups", (r) => String(r.sseDuplicates)],
  ["SSE reconnects", (r) => String(r.reconnects)],
  ["longest stall per tenant (s)", (r) => r.stallsMs.map((x) => (x / 1000).toFixed(1)).join(" / ")],
  ["stall after back (s)", (r) => (r.stallAfterBackMs / 1000).toFixed(1)],
  [
    "pg probe (down max / recovery ms)",
    (r) => (r.pgDownMaxMs === undefined ? "" : `${r.pgDownMaxMs} / ${r.pgRecoveryMs ?? "never"}`),
  ],
  ["result", (r) => (r.failures.length ? `FAIL: ${r.failures.join("; ")}` : "pass")],
];

/** The results as a Markdown table. */
export function resultTable(results: ScenarioResult[]): string {
  const head = `| ${COLUMNS.map(([h]) => h).join(" | ")} |`;
  const sep = `| ${COLUMNS.map(() => "---").join(" | ")} |`;
  const rows = results.map((r) => `| ${COLUMNS.map(([, f]) => f(r)).join(" | ")} |`);
  return [head, sep, ...rows].join("\n");
}

import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import {
  type AskAction,
  CONSUMERS,
  type Decision,
  type DecisionMessage,
  type ExternalShareParams,
  msgId,
  type ReportMessage,
  STREAMS,
  subjects,
  type Tenant,
} from "@nexus/contracts";
import {
  type AskRow,
  appendHistory,
  askDecidedReport,
  connectNats,
  createAsk,
  createLogger,
  type Database,
  decideAsk,
  ensureTenant,
  getAsk,
  hashCanonical,
  jetStreamReportPublisher,
  type Logger,
  publishJson,
  type ReportPublisher,
} from "@nexus/platform";
import { createTestDatabase, natsForTest, type TestDatabase, type TestNats } from "@nexus/testkit";
import type { Kysely } from "kysely";
import type { ApprovalWorkerOptions } from "../src/config.ts";
import { type ApprovalWorker, type ApprovalWorkerDeps, createApprovalWorker } from "../src/worker.ts";

/** One test file's infrastructure: its own NATS server (topology provisioned) and database. */
export interface Harness {
  nats: TestNats;
  tdb: TestDatabase;
  db: Kysely<Database>;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  reports: ReportPublisher;
  logger: Logger;
  workers: ApprovalWorker[];
  close(): Promise<void>;
}

/** Starts a file's harness. Call `close()` in `afterAll`. */
export async function startHarness(): Promise<Harness> {
  const nats = await natsForTest();
  const tdb = await createTestDatabase();
  const logger = createLogger({ service: "approval-worker-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
  const nc = await connectNats({ url: nats.url, name: "approval-worker-test", logger });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const h: Harness = {
    nats,
    tdb,
    db: tdb.db,
    nc,
    js,
    jsm,
    reports: jetStreamReportPublisher(js),
    logger,
    workers: [],
    async close() {
      await stopWorkers(h);
      await nc.drain().catch(() => {});
      await tdb.drop();
      await nats.stop();
    },
  };
  return h;
}

/** Worker options for tests: short backoff, sweeper off unless asked for. */
export const TEST_OPTIONS: ApprovalWorkerOptions = {
  maxRetries: 5,
  retryBaseMs: 50,
  retryMaxMs: 200,
  maxInFlight: 16,
  expirySweepMs: 0,
};

/** Builds (and by default starts) a worker in-process on the harness. */
export async function startWorker(
  h: Harness,
  over: Partial<Omit<ApprovalWorkerDeps, "config">> & { config?: Partial<ApprovalWorkerOptions> } = {},
  start = true,
): Promise<ApprovalWorker> {
  const { config, ...rest } = over;
  const w = createApprovalWorker({
    db: h.db,
    js: h.js,
    nc: h.nc,
    reports: h.reports,
    logger: h.logger,
    ...rest,
    config: { ...TEST_OPTIONS, ...config },
  });
  h.workers.push(w);
  if (start) await w.start();
  return w;
}

/** Stops every worker of the harness (call in `afterEach`). */
export async function stopWorkers(h: Harness): Promise<void> {
  const ws = h.workers.splice(0);
  await Promise.all(ws.map((w) => w.stop(0)));
}

/** A seeded RED command with its open ask. */
export interface SeededAsk {
  tenant: Tenant;
  askId: string;
  commandId: string;
  /** The command's correlation id (the ask's own). */
  correlationId: string;
  /** The held params (an `external_share.prepare` body unless `held` was given). */
  params: ExternalShareParams;
  row: AskRow;
}

let seq = 0;

/**
 * Inserts what the command-worker leaves behind for a RED `external_share.prepare`: the tenant
 * settings row, the command (`waiting_approval`) and its open ask with the action hash and the
 * tenant's current policy version.
 */
export async function seedAsk(
  db: Kysely<Database>,
  tenant: Tenant,
  o: {
    expiresInMs?: number;
    params?: Partial<ExternalShareParams>;
    /** Hold another command type (one a tenant raised to RED) with these exact params. */
    held?: { type: string; params: Record<string, unknown> };
  } = {},
): Promise<SeededAsk> {
  seq += 1;
  const n = `${Date.now().toString(36)}-${seq}`;
  const askId = `ask-${n}`;
  const commandId = `cmd-${n}`;
  const correlationId = `c-cmd-${n}`;
  const share: ExternalShareParams = {
    recipient: "kim@example.com",
    resource: { ref: "doc:quarterly-report", title: "Quarterly report" },
    channel: "email",
    message: "Here is the report",
    ...o.params,
  };
  const type = o.held?.type ?? "external_share.prepare";
  const params = (o.held?.params ?? share) as ExternalShareParams;
  const now = new Date();
  await ensureTenant(db, tenant);
  const settings = await db
    .selectFrom("tenant_settings")
    .select("policy_version")
    .where("org_id", "=", tenant.org_id)
    .where("project_id", "=", tenant.project_id)
    .executeTakeFirstOrThrow();
  await db
    .insertInto("commands")
    .values({
      org_id: tenant.org_id,
      project_id: tenant.project_id,
      command_id: commandId,
      type,
      body_hash: hashCanonical({ type, params }),
      correlation_id: correlationId,
      surface: "test",
      principal: "requester-1",
      params: JSON.stringify(params),
      context: "{}",
      risk_level: "RED",
      policy_version: settings.policy_version,
      status: "waiting_approval",
      ask_id: askId,
      accepted_at: now,
      updated_at: now,
    })
    .execute();
  const action: AskAction = { type, command_id: commandId, params, summary: `Run ${type}` };
  const { row } = await createAsk(db, {
    ask_id: askId,
    tenant,
    command_id: commandId,
    correlation_id: correlationId,
    risk_level: "RED",
    action,
    action_hash: hashCanonical({ type: action.type, params }),
    policy_version: settings.policy_version,
    expires_at: new Date(now.getTime() + (o.expiresInMs ?? 3_600_000)),
    now,
  });
  return { tenant, askId, commandId, correlationId, params, row };
}

/** A decision message as the gateway builds it. */
export function decisionMessage(
  s: SeededAsk,
  decision: Decision,
  o: { by?: string; note?: string; correlationId?: string; at?: Date } = {},
): DecisionMessage {
  return {
    v: 1,
    tenant: s.tenant,
    ask_id: s.askId,
    command_id: s.commandId,
    decision,
    ...(o.note !== undefined ? { note: o.note } : {}),
    correlation_id: o.correlationId ?? `c-decide-${s.askId}`,
    decided_by: o.by ?? "user-123",
    decided_at: (o.at ?? new Date()).toISOString(),
  };
}

/** Publishes a decision on its subject; `dedupKey` varies the Nats-Msg-Id (a distinct copy). */
export async function publishDecision(js: JetStreamClient, m: DecisionMessage, dedupKey = "decision"): Promise<void> {
  await publishJson(js, subjects.approval(m.tenant, m.ask_id), m, {
    tenant: m.tenant,
    msgId: msgId(m.tenant, m.ask_id, dedupKey),
    correlationId: m.correlation_id,
  });
}

/**
 * Does what the gateway's `POST /approvals/{ask_id}/decide` does, in one transaction: lock the
 * ask, `decideAsk`, history `decided`, publish the DecisionMessage and `ask.decided`, commit.
 * @returns the decided row, or `undefined` when the ask was not open.
 */
export async function decideLikeGateway(
  h: Harness,
  s: SeededAsk,
  decision: Decision,
  o: { by?: string; note?: string; correlationId?: string } = {},
): Promise<AskRow | undefined> {
  const now = new Date();
  const m = decisionMessage(s, decision, { ...o, at: now });
  return h.db.transaction().execute(async (tx) => {
    const locked = await getAsk(tx, s.tenant, s.askId, true);
    if (!locked) throw new Error("no ask");
    const row = await decideAsk(tx, s.tenant, s.askId, {
      decision,
      decided_by: m.decided_by,
      note: m.note ?? null,
      correlation_id: m.correlation_id,
      now,
    });
    if (!row) return undefined;
    await appendHistory(tx, s.tenant, {
      ask_id: s.askId,
      command_id: s.commandId,
      event: "decided",
      decision,
      executor_id: m.decided_by,
      note: m.note ?? null,
      correlation_id: m.correlation_id,
    });
    await publishDecision(h.js, m);
    await h.reports.publish({
      tenant: s.tenant,
      entityId: s.askId,
      step: "decided",
      report: askDecidedReport(row),
      causality: { correlation_id: m.correlation_id, command_id: s.commandId, ask_id: s.askId },
      ts: now.toISOString(),
    });
    return row;
  });
}

/** Every message stored on `subject` in `stream`, oldest first (an ordered consumer). */
export async function readStream<T>(h: Harness, stream: string, subject: string): Promise<T[]> {
  const info = await h.jsm.streams.info(stream, { subjects_filter: subject });
  const n = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  if (n === 0) return [];
  const c = await h.js.consumers.get(stream, { filter_subjects: subject });
  const out: T[] = [];
  const iter = await c.fetch({ max_messages: n, expires: 3000 });
  for await (const m of iter) {
    out.push(m.json<T>());
    if (out.length >= n) break;
  }
  await c.delete().catch(() => {});
  return out;
}

/** The tenant's reports as stored in NEXUS_REPORTS (what SSE clients would get), oldest first. */
export function readReports(h: Harness, t: Tenant): Promise<ReportMessage[]> {
  return readStream<ReportMessage>(h, STREAMS.reports, subjects.report(t));
}

/** Reports of one ask by type. */
export async function reportsOfAsk(h: Harness, t: Tenant, askId: string): Promise<ReportMessage[]> {
  return (await readReports(h, t)).filter((r) => (r.report as { ask?: { ask_id?: string } }).ask?.ask_id === askId);
}

/** Collects CASE_ACTION notifications of a tenant (core NATS subscription). */
export function collectNotifications(h: Harness, t: Tenant): { items: Record<string, unknown>[]; stop(): void } {
  const sub = h.nc.subscribe(subjects.caseAction(t));
  const items: Record<string, unknown>[] = [];
  void (async () => {
    for await (const m of sub) items.push(m.json<Record<string, unknown>>());
  })();
  return { items, stop: () => sub.unsubscribe() };
}

/** True when the durable `approval-worker` consumer has nothing pending or unacknowledged. */
export async function consumerIdle(h: Harness): Promise<boolean> {
  const ci = await h.jsm.consumers.info(STREAMS.approvals, CONSUMERS.approvalWorker);
  return ci.num_pending === 0 && ci.num_ack_pending === 0;
}

/** Rows of one ask's action history, oldest first. */
export function historyRows(h: Harness, s: SeededAsk) {
  return h.db
    .selectFrom("action_history")
    .selectAll()
    .where("org_id", "=", s.tenant.org_id)
    .where("project_id", "=", s.tenant.project_id)
    .where("ask_id", "=", s.askId)
    .orderBy("id")
    .execute();
}

/** Outbox rows of one ask. */
export function outboxRows(h: Harness, askId: string) {
  return h.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();
}

/** The ask row (asserting it exists). */
export async function askRow(h: Harness, s: SeededAsk): Promise<AskRow> {
  const r = await getAsk(h.db, s.tenant, s.askId);
  if (!r) throw new Error(`ask ${s.askId} missing`);
  return r;
}

/** The command row's status. */
export async function commandStatus(h: Harness, s: SeededAsk): Promise<string | undefined> {
  const r = await h.db
    .selectFrom("commands")
    .select("status")
    .where("org_id", "=", s.tenant.org_id)
    .where("project_id", "=", s.tenant.project_id)
    .where("command_id", "=", s.commandId)
    .executeTakeFirst();
  return r?.status;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

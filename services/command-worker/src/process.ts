import { randomUUID } from "node:crypto";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import {
  type AgentReport,
  type ApiError,
  apiError,
  CommandMessage,
  type DeadLetter,
  msgId,
  STREAMS,
  subjects,
  type Tenant,
  tenantFromSubject,
} from "@nexus/contracts";
import {
  acceptedReport,
  actionHash,
  askCreatedReport,
  backoffMs,
  bindContext,
  type CommandRow,
  commandBodyHash,
  completeCommand,
  completedReport,
  createAsk,
  type Database,
  failCommand,
  failedReport,
  getAsk,
  getCommand,
  holdCommandForAsk,
  insertCommand,
  progressReport,
  publishJson,
  type ReportPublisher,
  riskWarningReport,
  setAcceptedReportId,
  startCommand,
  startedReport,
} from "@nexus/platform";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { type CommandHandler, type HandlerContext, isHandlerError, type LlmProvider } from "./handler.ts";

/** What {@link processCommand} depends on. */
export interface CommandWorkerDeps {
  db: Kysely<Database>;
  js: JetStreamClient;
  reports: ReportPublisher;
  logger: Logger;
  now: () => Date;
  llm: LlmProvider;
  /** The handler registry: a list of modules, looked up by `type`. */
  handlers: readonly CommandHandler<any, any>[];
  config: {
    MAX_RETRIES: number;
    RETRY_BASE_MS: number;
    RETRY_MAX_MS: number;
    FAULT_INJECT_HANDLER_DELAY_MS: number;
    CONSUMER_ACK_WAIT_MS: number;
  };
  /** Lifecycle events (`command:started`, …) for metrics; optional. */
  events?: (event: CommandEvent, m: CommandMessage) => void;
}

/** Lifecycle events of a command inside the worker. */
export type CommandEvent =
  | "command:started"
  | "command:completed"
  | "command:failed"
  | "command:retried"
  | "command:held"
  | "command:dead-lettered";

const FINAL = new Set(["done", "failed", "cancelled"]);

/**
 * Handles one delivery of a command message and settles it (ack / nak / term).
 *
 * Effect once (ARCHITECTURE.md invariant 3): the command row is a state machine moved by
 * conditional updates, and every report has a Nats-Msg-Id derived from the fact it states, so
 * a redelivery re-publishes nothing new and a finished command is never run again.
 * Order: `command.accepted` is ensured before `command.started` (the gateway may not have
 * published it yet), the database is written before each report is published (invariant 6),
 * and the message is acked only after both.
 *
 * Failures: a non-retryable `HandlerError` fails the command at once; anything else is retried
 * with exponential backoff up to `MAX_RETRIES`, then dead-lettered to NEXUS_DLQ and reported
 * as `command.failed` (`RETRIES_EXHAUSTED`). A message that is not a valid CommandMessage
 * (poison) goes straight to the DLQ.
 */
export async function processCommand(deps: CommandWorkerDeps, msg: JsMsg, signal: AbortSignal): Promise<void> {
  const parsed = parseMessage(msg);
  if (!parsed.ok) {
    await deadLetter(deps.js, tenantFromSubject(msg.subject), msg, "poison", parsed.error);
    deps.logger.warn({ subject: msg.subject, seq: msg.seq, error: parsed.error }, "command:poison");
    msg.term(); // bare +TERM: nats-server < 2.10.4 ignores "+TERM <reason>" and redelivers; the reason is in the DLQ entry
    return;
  }
  const m = parsed.message;
  const t = m.tenant;
  const log = bindContext(deps.logger, {
    org_id: t.org_id,
    project_id: t.project_id,
    command_id: m.command_id,
    correlation_id: m.correlation_id,
  });
  const causality = { correlation_id: m.correlation_id, command_id: m.command_id };
  const publish = (
    step: string,
    report: Parameters<ReportPublisher["publish"]>[0]["report"],
    ts = deps.now().toISOString(),
  ) => deps.reports.publish({ tenant: t, entityId: m.command_id, step, report, causality, ts });

  // 1. Normally the gateway committed the row and its accepted report id before we see the
  // message. If the row is not visible, the insert either waits for the gateway's open
  // transaction (then conflicts) or creates the row the gateway rolled back after publishing.
  let row = await getCommand(deps.db, t, m.command_id);
  if (!row) {
    await insertCommand(deps.db, m, commandBodyHash(m));
    row = await getCommand(deps.db, t, m.command_id);
    if (!row) throw new Error("command row missing after insert");
  }
  // 2. command.accepted before anything else about this command; only publish it when the
  // gateway has not recorded it (same Nats-Msg-Id as the gateway's, so never a second report).
  if (!row.accepted_report_id) {
    const acceptedId = await publish("accepted", acceptedReport(m), m.accepted_at);
    await setAcceptedReportId(deps.db, t, m.command_id, acceptedId);
  }
  if (FINAL.has(row.status) || row.status === "waiting_approval") {
    await republishOutcome(deps, m, row, publish);
    msg.ack();
    return;
  }

  // 3. RED: hold for a human. Nothing runs before an approve decision (invariant 2).
  if (m.risk_level === "RED") {
    const now = deps.now();
    const ask = await deps.db.transaction().execute(async (trx) => {
      const { row: a } = await createAsk(trx, {
        ask_id: randomUUID(),
        tenant: t,
        command_id: m.command_id,
        correlation_id: m.correlation_id,
        risk_level: m.risk_level,
        action: { type: m.type, command_id: m.command_id, params: m.params, summary: describeAction(m) },
        action_hash: actionHash({ type: m.type, params: m.params }),
        policy_version: m.policy_version,
        expires_at: new Date(now.getTime() + m.ask_ttl_seconds * 1000),
        now,
      });
      await holdCommandForAsk(trx, t, m.command_id, a.ask_id, now);
      return a;
    });
    await deps.reports.publish({
      tenant: t,
      entityId: m.command_id,
      step: "ask.created",
      report: askCreatedReport(ask, m.type),
      causality: { ...causality, ask_id: ask.ask_id },
      ts: ask.created_at.toISOString(),
    });
    deps.events?.("command:held", m);
    log.info({ ask_id: ask.ask_id }, "command:held-for-approval");
    msg.ack();
    return;
  }

  // 4. GREEN / YELLOW: run.
  row = await startCommand(deps.db, t, m.command_id, deps.now());
  if (!row) {
    const current = await getCommand(deps.db, t, m.command_id);
    if (current) await republishOutcome(deps, m, current, publish);
    msg.ack();
    return;
  }
  await publish("started", startedReport(m), row.started_at?.toISOString());
  if (m.risk_level === "YELLOW") await publish("risk.warning", riskWarningReport(m), row.started_at?.toISOString());
  deps.events?.("command:started", m);

  const handler = deps.handlers.find((h) => h.type === m.type);
  const keepAlive = setInterval(() => msg.working(), Math.max(250, Math.floor(deps.config.CONSUMER_ACK_WAIT_MS / 3)));
  try {
    if (!handler) throw new NonRetryable(apiError("HANDLER_FAILED", `No handler for ${m.type}`));
    const params = handler.params.safeParse(m.params);
    if (!params.success) throw new NonRetryable(apiError("VALIDATION_FAILED", `params do not fit ${m.type}`));
    if (deps.config.FAULT_INJECT_HANDLER_DELAY_MS > 0) await sleep(deps.config.FAULT_INJECT_HANDLER_DELAY_MS, signal);
    const ctx: HandlerContext = {
      logger: log,
      signal,
      tenant: t,
      commandId: m.command_id,
      correlationId: m.correlation_id,
      now: deps.now,
      llm: deps.llm,
      progress: async (step, percent) => {
        await publish(`progress:${step}`, progressReport(m, step, percent));
      },
    };
    const result = await handler.handle(params.data, ctx);
    const done = await completeCommand(deps.db, t, m.command_id, result, deps.now());
    if (done) {
      await publish("completed", completedReport(m, result), done.finished_at?.toISOString());
      deps.events?.("command:completed", m);
      log.info("command:completed");
    } else {
      const current = await getCommand(deps.db, t, m.command_id);
      if (current) await republishOutcome(deps, m, current, publish);
    }
    msg.ack();
  } catch (err) {
    if (signal.aborted) throw err; // shutdown: the consumer naks it for another replica
    const attempt = msg.info.deliveryCount;
    const nonRetryable =
      err instanceof NonRetryable
        ? err.error
        : isHandlerError(err) && !err.retryable
          ? apiError(err.code, err.message)
          : undefined;
    if (nonRetryable) {
      await fail(deps, m, nonRetryable, publish);
      log.info({ code: nonRetryable.code }, "command:failed");
      msg.ack();
      return;
    }
    if (attempt > deps.config.MAX_RETRIES) {
      const error = apiError("RETRIES_EXHAUSTED", `Failed after ${attempt} attempts`);
      await deadLetter(deps.js, t, msg, "retries_exhausted", err instanceof Error ? err.message : String(err));
      await fail(deps, m, error, publish);
      deps.events?.("command:dead-lettered", m);
      log.warn({ err, attempt }, "command:dead-lettered");
      msg.ack();
      return;
    }
    const delay = backoffMs(attempt, deps.config.RETRY_BASE_MS, deps.config.RETRY_MAX_MS);
    deps.events?.("command:retried", m);
    log.warn({ err, attempt, delay_ms: delay }, "command:retry");
    msg.nak(delay);
  } finally {
    clearInterval(keepAlive);
  }
}

class NonRetryable extends Error {
  override name = "NonRetryable";
  constructor(readonly error: ApiError) {
    super(error.message);
  }
}

async function fail(
  deps: CommandWorkerDeps,
  m: CommandMessage,
  error: ApiError,
  publish: (step: string, r: AgentReport, ts?: string) => Promise<string>,
): Promise<void> {
  const row = await failCommand(deps.db, m.tenant, m.command_id, error, deps.now());
  if (row) {
    await publish("failed", failedReport(m, error), row.finished_at?.toISOString());
    deps.events?.("command:failed", m);
  } else {
    const current = await getCommand(deps.db, m.tenant, m.command_id);
    if (current) await republishOutcome(deps, m, current, publish);
  }
}

/**
 * A redelivered message of a command that already reached a stable state: publish the report
 * of that state again (a no-op inside the duplicate window; outside it a harmless duplicate
 * fact, since reports carry entity state). Nothing runs again.
 */
async function republishOutcome(
  deps: CommandWorkerDeps,
  m: CommandMessage,
  row: CommandRow,
  publish: (step: string, r: AgentReport, ts?: string) => Promise<string>,
): Promise<void> {
  const ts = (row.finished_at ?? row.updated_at).toISOString();
  if (row.status === "done" && !row.ask_id) await publish("completed", completedReport(m, row.result), ts);
  else if (row.status === "failed" && !row.ask_id) await publish("failed", failedReport(m, row.error as ApiError), ts);
  else if (row.status === "waiting_approval" && row.ask_id) {
    const ask = await getAsk(deps.db, m.tenant, row.ask_id);
    if (ask)
      await deps.reports.publish({
        tenant: m.tenant,
        entityId: m.command_id,
        step: "ask.created",
        report: askCreatedReport(ask, m.type),
        causality: { correlation_id: m.correlation_id, command_id: m.command_id, ask_id: ask.ask_id },
        ts: ask.created_at.toISOString(),
      });
  }
}

function describeAction(m: CommandMessage): string {
  if (m.type === "external_share.prepare") {
    const p = m.params as { recipient?: string; resource?: { title?: string }; channel?: string };
    return `Share "${p.resource?.title ?? "a resource"}" with ${p.recipient ?? "someone"} via ${p.channel ?? "?"}`;
  }
  return `Run ${m.type}`;
}

function parseMessage(msg: JsMsg): { ok: true; message: CommandMessage } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = msg.json();
  } catch {
    return { ok: false, error: "payload is not JSON" };
  }
  const r = CommandMessage.safeParse(json);
  if (!r.success)
    return { ok: false, error: `payload does not match CommandMessage: ${r.error.issues[0]?.message ?? ""}` };
  const fromSubject = tenantFromSubject(msg.subject);
  if (
    !fromSubject ||
    fromSubject.org_id !== r.data.tenant.org_id ||
    fromSubject.project_id !== r.data.tenant.project_id
  )
    return { ok: false, error: "payload tenant does not match the subject" };
  return { ok: true, message: r.data };
}

/** Parks a message on `nexus.dlq.<org>.<project>.cmd` with why it was dead-lettered. */
async function deadLetter(
  js: JetStreamClient,
  tenant: Tenant | null,
  msg: JsMsg,
  reason: DeadLetter["reason"],
  error: string,
): Promise<void> {
  const dl: DeadLetter = {
    reason,
    error,
    stream: STREAMS.commands,
    subject: msg.subject,
    stream_seq: msg.seq,
    deliveries: msg.info.deliveryCount,
    payload: msg.string(),
    ts: new Date().toISOString(),
  };
  const t = tenant ?? { org_id: "_unknown", project_id: "_unknown" };
  await publishJson(js, subjects.dlq(tenant, "cmd"), dl, {
    tenant: t,
    msgId: tenant ? msgId(tenant, `dlq-${msg.seq}`) : `_unknown.dlq-${msg.seq}`,
    correlationId: msg.headers?.get("Nexus-Correlation-Id") || `dlq-${msg.seq}`,
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

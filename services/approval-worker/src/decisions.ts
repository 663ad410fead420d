/**
 * The ask state machine as the approval-worker drives it: one function per transition, each a
 * conditional update (`… WHERE status IN (from) RETURNING *`) inside one transaction together
 * with the command row and the append-only action history, so that a race or a redelivery has
 * exactly one winner (ARCHITECTURE.md invariant 3). Reports are published after the commit,
 * with `Nats-Msg-Id` `<org>.<project>.<ask_id>:<step>`, so re-publishing after a crash is a no-op.
 *
 * ```
 *   open ──decide──▶ decided ──approve──▶ executing ──▶ done
 *     │                 │                     └──────▶ failed   (ACTION_CHANGED, POLICY_CHANGED,
 *     │                 └──reject──▶ cancelled                    CONNECTOR_FAILED, RETRIES_EXHAUSTED)
 *     └──sweeper──▶ expired      (never executes: expiry.ts)
 * ```
 */
import {
  type ApiError,
  AskAction,
  apiError,
  type Causality,
  type DecisionMessage,
  type Tenant,
  zodDetails,
} from "@nexus/contracts";
import {
  type AskRow,
  appendHistory,
  askCancelledReport,
  askDecidedReport,
  askExecutedReport,
  askExecutionFailedReport,
  bindContext,
  cancelCommand,
  completeCommand,
  type Database,
  decideAsk,
  failCommand,
  getAsk,
  getCommand,
  hashCanonical,
  type Logger,
  progressReport,
  type ReportPublisher,
  readSettings,
  transitionAsk,
} from "@nexus/platform";
import type { Kysely } from "kysely";
import { type ActionModule, isActionError } from "./actions/types.ts";
import { isConnectorError, type ShareConnector } from "./connector/types.ts";
import type { AskEventBase, WorkerEvents } from "./events.ts";
import { type CaseActionKind, caseActionNotification, type Notifier } from "./notify.ts";

/** What the transitions need (a subset of the worker's dependency bag). */
export interface DecisionDeps {
  db: Kysely<Database>;
  reports: ReportPublisher;
  notifier: Notifier;
  connector: ShareConnector;
  actions: ActionModule[];
  events: WorkerEvents;
  clock: () => Date;
}

/** Per-delivery context. */
export interface DeliveryContext {
  logger: Logger;
  /** Aborted when the worker shuts down: no further writes, the consumer naks the message. */
  signal: AbortSignal;
  /**
   * True when JetStream delivered this message before (a worker died or nak'ed it). A
   * redelivery that finds a final state re-emits that state's notification, because the
   * earlier delivery may have died between commit and publish. A fresh duplicate message
   * (the gateway's idempotent re-decision) does not.
   */
  redelivered: boolean;
}

/** How one decision message ended; every outcome is acked. */
export type DecisionOutcome =
  | "executed"
  | "execution_failed"
  | "cancelled"
  | "already_final"
  | "refused_expired"
  | "refused_conflicting"
  | "unknown_ask";

/** The tenant of an ask row. */
export const tenantOf = (row: AskRow): Tenant => ({ org_id: row.org_id, project_id: row.project_id });

const eventBase = (row: AskRow): AskEventBase => ({
  tenant: tenantOf(row),
  ask_id: row.ask_id,
  command_id: row.command_id,
});

/** Causality of every report that follows a decision: the decision's correlation id (LOCKED rule 4). */
export function decisionCausality(row: AskRow): Causality {
  return {
    correlation_id: row.decision_correlation_id ?? row.correlation_id,
    command_id: row.command_id,
    ask_id: row.ask_id,
  };
}

/**
 * open → decided, for a decision whose gateway transaction did not commit (it publishes before
 * committing). Same writes as the gateway: `decideAsk` + history `decided`. The expiry check
 * uses the worker's clock, so a decision arriving after `expires_at` is refused (fail safe).
 * @returns the decided row, or `undefined` when the ask was not open (someone else won).
 */
export async function applyDecision(d: DecisionDeps, m: DecisionMessage): Promise<AskRow | undefined> {
  const now = d.clock();
  return d.db.transaction().execute(async (tx) => {
    const row = await decideAsk(tx, m.tenant, m.ask_id, {
      decision: m.decision,
      decided_by: m.decided_by,
      note: m.note ?? null,
      correlation_id: m.correlation_id,
      now,
    });
    if (!row) return undefined;
    await appendHistory(tx, m.tenant, {
      ask_id: row.ask_id,
      command_id: row.command_id,
      event: "decided",
      decision: m.decision,
      executor_id: m.decided_by,
      note: m.note ?? null,
      correlation_id: m.correlation_id,
      details: { applied_by: "approval-worker" },
    });
    return row;
  });
}

/** Publishes `ask.decided` exactly as the gateway does (same step and ts → deduplicated). */
export async function publishDecided(d: DecisionDeps, row: AskRow): Promise<void> {
  await d.reports.publish({
    tenant: tenantOf(row),
    entityId: row.ask_id,
    step: "decided",
    report: askDecidedReport(row),
    causality: decisionCausality(row),
    ts: (row.decided_at ?? row.updated_at).toISOString(),
  });
}

/**
 * decided(reject) → cancelled; the command → cancelled; history `cancelled` (executor = the
 * rejecting principal). The action never runs.
 * @returns the cancelled row, or `undefined` when the ask was no longer `decided`.
 */
export async function cancelRejected(d: DecisionDeps, row: AskRow): Promise<AskRow | undefined> {
  if (row.decision !== "reject") return undefined;
  const t = tenantOf(row);
  const now = d.clock();
  return d.db.transaction().execute(async (tx) => {
    const c = await transitionAsk(tx, t, row.ask_id, ["decided"], "cancelled", now);
    if (!c) return undefined;
    await cancelCommand(tx, t, c.command_id, now);
    await appendHistory(tx, t, {
      ask_id: c.ask_id,
      command_id: c.command_id,
      event: "cancelled",
      decision: "reject",
      executor_id: c.decided_by ?? "system",
      note: c.decision_note,
      correlation_id: c.decision_correlation_id ?? c.correlation_id,
    });
    return c;
  });
}

/** Publishes `ask.cancelled` (step `cancelled`, ts = when it was cancelled). */
export async function publishCancelled(d: DecisionDeps, row: AskRow): Promise<void> {
  await d.reports.publish({
    tenant: tenantOf(row),
    entityId: row.ask_id,
    step: "cancelled",
    report: askCancelledReport(row),
    causality: decisionCausality(row),
    ts: row.updated_at.toISOString(),
  });
}

/**
 * decided(approve) → executing. A redelivery after a crash finds `executing` and continues, so
 * everything after this point must be idempotent.
 * @returns the row, or `undefined` when the ask was no longer `decided`.
 */
export async function startExecution(d: DecisionDeps, row: AskRow): Promise<AskRow | undefined> {
  if (row.decision !== "approve") return undefined;
  return transitionAsk(d.db, tenantOf(row), row.ask_id, ["decided"], "executing", d.clock());
}

/**
 * "Approve exactly what runs" (CONTRACT.md, ARCHITECTURE.md invariant 2):
 * - the held action must still hash to `ask.action_hash` (`hashCanonical({type, params})`);
 * - the command row must still carry the same type and params;
 * - the tenant's compliance `policy_version` must equal the one the ask was created under.
 * @returns the parsed action, or the error to fail the ask with (`ACTION_CHANGED`, `POLICY_CHANGED`).
 */
export async function verifyAction(
  d: DecisionDeps,
  row: AskRow,
): Promise<{ ok: true; action: AskAction } | { ok: false; error: ApiError }> {
  const t = tenantOf(row);
  const parsed = AskAction.safeParse(row.action);
  if (!parsed.success) return { ok: false, error: apiError("ACTION_CHANGED", "The held action is malformed") };
  const action = parsed.data;
  if (hashCanonical({ type: action.type, params: action.params }) !== row.action_hash)
    return {
      ok: false,
      error: apiError("ACTION_CHANGED", "The held action no longer matches the approved action hash"),
    };
  const command = await getCommand(d.db, t, row.command_id);
  if (
    !command ||
    command.type !== action.type ||
    hashCanonical({ type: command.type, params: command.params }) !== row.action_hash
  )
    return { ok: false, error: apiError("ACTION_CHANGED", "The command's arguments differ from the approved action") };
  const settings = await readSettings(d.db, t);
  if (settings.policy_version !== row.policy_version)
    return {
      ok: false,
      error: apiError(
        "POLICY_CHANGED",
        `The compliance policy changed after the ask was created (version ${row.policy_version} → ${settings.policy_version})`,
      ),
    };
  return { ok: true, action };
}

/**
 * decided | executing → failed with `error`; the command → failed; history `execution_failed`;
 * a share still waiting in the outbox is withdrawn in the same transaction, so a failed ask
 * never sends anything afterwards.
 * @returns the failed row, or `undefined` when the ask had already left those states.
 */
export async function failExecution(d: DecisionDeps, row: AskRow, error: ApiError): Promise<AskRow | undefined> {
  const t = tenantOf(row);
  const now = d.clock();
  return d.db.transaction().execute(async (tx) => {
    const f = await transitionAsk(tx, t, row.ask_id, ["decided", "executing"], "failed", now, { error });
    if (!f) return undefined;
    await failCommand(tx, t, f.command_id, error, now);
    await tx
      .updateTable("share_outbox")
      .set({ status: "failed", last_error: `withdrawn: ask failed with ${error.code}` })
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .where("ask_id", "=", f.ask_id)
      .where("status", "=", "queued")
      .execute();
    await appendHistory(tx, t, {
      ask_id: f.ask_id,
      command_id: f.command_id,
      event: "execution_failed",
      decision: f.decision,
      executor_id: f.decided_by ?? "system",
      note: f.decision_note,
      correlation_id: f.decision_correlation_id ?? f.correlation_id,
      details: { error },
    });
    return f;
  });
}

/** Publishes `ask.execution_failed` (step `execution_failed`). */
export async function publishExecutionFailed(d: DecisionDeps, row: AskRow): Promise<void> {
  const error = (row.error as ApiError | null) ?? apiError("INTERNAL");
  await d.reports.publish({
    tenant: tenantOf(row),
    entityId: row.ask_id,
    step: "execution_failed",
    report: askExecutionFailedReport(row, error),
    causality: decisionCausality(row),
    ts: row.updated_at.toISOString(),
  });
}

/**
 * executing → done with `result`; the command → done with the same result; history `executed`
 * (executor = the approver, with the decision's note and correlation id).
 * @returns the done row, or `undefined` when another delivery finished it first.
 */
export async function completeExecution(d: DecisionDeps, row: AskRow, result: unknown): Promise<AskRow | undefined> {
  const t = tenantOf(row);
  const now = d.clock();
  return d.db.transaction().execute(async (tx) => {
    const done = await transitionAsk(tx, t, row.ask_id, ["executing"], "done", now, { result });
    if (!done) return undefined;
    await completeCommand(tx, t, done.command_id, result, now);
    await appendHistory(tx, t, {
      ask_id: done.ask_id,
      command_id: done.command_id,
      event: "executed",
      decision: done.decision,
      executor_id: done.decided_by ?? "system",
      note: done.decision_note,
      correlation_id: done.decision_correlation_id ?? done.correlation_id,
      details: { result },
    });
    return done;
  });
}

/** Publishes `ask.executed` with the stored result (step `executed`). */
export async function publishExecuted(d: DecisionDeps, row: AskRow): Promise<void> {
  await d.reports.publish({
    tenant: tenantOf(row),
    entityId: row.ask_id,
    step: "executed",
    report: askExecutedReport(row, row.result),
    causality: decisionCausality(row),
    ts: row.updated_at.toISOString(),
  });
}

function notify(d: DecisionDeps, row: AskRow, kind: CaseActionKind): void {
  const code = kind === "execution_failed" ? (row.error as ApiError | null)?.code : undefined;
  d.notifier.caseAction(tenantOf(row), caseActionNotification(row, kind, code));
}

const RETRY = Symbol("retry");

async function fail(d: DecisionDeps, row: AskRow, error: ApiError): Promise<DecisionOutcome | typeof RETRY> {
  const f = await failExecution(d, row, error);
  if (!f) return RETRY;
  d.events.emit("ask:execution_failed", { ...eventBase(f), code: error.code });
  await publishExecutionFailed(d, f);
  notify(d, f, "execution_failed");
  return "execution_failed";
}

/** Verifies and runs the approved action of an `executing` ask, then records the outcome. */
async function execute(d: DecisionDeps, row: AskRow, ctx: DeliveryContext): Promise<DecisionOutcome | typeof RETRY> {
  const v = await verifyAction(d, row);
  if (!v.ok) return fail(d, row, v.error);
  const mod = d.actions.find((a) => a.type === v.action.type);
  if (!mod) return fail(d, row, apiError("HANDLER_FAILED", `The approval-worker has no executor for ${v.action.type}`));
  const params = mod.params.safeParse(v.action.params);
  if (!params.success)
    return fail(d, row, apiError("VALIDATION_FAILED", undefined, zodDetails(params.error, "params")));
  ctx.signal.throwIfAborted();
  let result: unknown;
  try {
    result = await mod.execute(params.data, {
      tenant: tenantOf(row),
      ask: row,
      logger: ctx.logger,
      signal: ctx.signal,
      connector: d.connector,
      now: d.clock,
      progress: async (step, percent) => {
        await d.reports.publish({
          tenant: tenantOf(row),
          entityId: row.command_id,
          step: `progress:${step}`,
          report: progressReport({ command_id: row.command_id, type: v.action.type }, step, percent),
          causality: decisionCausality(row),
          ts: d.clock().toISOString(),
        });
      },
    });
  } catch (err) {
    if (isConnectorError(err) && !err.retryable) return fail(d, row, apiError("CONNECTOR_FAILED", err.message));
    if (isActionError(err) && !err.retryable) return fail(d, row, err.error);
    throw err;
  }
  ctx.signal.throwIfAborted();
  const done = await completeExecution(d, row, result);
  if (!done) return RETRY;
  d.events.emit("ask:executed", { ...eventBase(done), result });
  await publishExecuted(d, done);
  notify(d, done, "executed");
  return "executed";
}

/**
 * Drives one decision to a final state and returns how it ended (the caller acks).
 * Reads the ask, applies whichever transition its state allows, and re-reads after a lost
 * race. Safe to call any number of times for the same message: every step is a conditional
 * update or an idempotent publish.
 * @throws on transient failures (Postgres, NATS, a retryable connector error): the caller naks
 *   with backoff; after `MAX_RETRIES` deliveries it calls {@link failAfterRetries}.
 */
export async function processDecision(
  d: DecisionDeps,
  m: DecisionMessage,
  ctx: DeliveryContext,
): Promise<DecisionOutcome> {
  for (let round = 0; round < 8; round++) {
    ctx.signal.throwIfAborted();
    const row = await getAsk(d.db, m.tenant, m.ask_id);
    if (!row || row.command_id !== m.command_id) return "unknown_ask";
    if (row.status === "open") {
      if (row.expires_at.getTime() <= d.clock().getTime()) {
        d.events.emit("decision:refused", { ...eventBase(row), reason: "expired" });
        return "refused_expired";
      }
      const decided = await applyDecision(d, m);
      if (decided)
        d.events.emit("ask:decided", { ...eventBase(decided), decision: m.decision, decided_by: m.decided_by });
      continue; // re-read: decided by us, by the gateway's late commit, or expired meanwhile
    }
    if (row.status === "expired") {
      // Fail safe: an expired ask never executes, whatever arrives afterwards.
      d.events.emit("decision:refused", { ...eventBase(row), reason: "expired" });
      return "refused_expired";
    }
    if (row.decision !== m.decision) {
      ctx.logger.warn(
        { row_decision: row.decision, message_decision: m.decision },
        "decision differs from the recorded one",
      );
      d.events.emit("decision:refused", { ...eventBase(row), reason: "conflicting_decision" });
      return "refused_conflicting";
    }
    await publishDecided(d, row);
    switch (row.status) {
      case "decided": {
        // The APPROVE/REJECT notification goes out with the transition that follows the
        // decision, so concurrent deliveries of one decision notify once.
        if (row.decision === "reject") {
          const c = await cancelRejected(d, row);
          if (!c) continue;
          d.events.emit("ask:cancelled", eventBase(c));
          notify(d, c, "rejected");
          await publishCancelled(d, c);
          return "cancelled";
        }
        const ex = await startExecution(d, row);
        if (!ex) continue;
        d.events.emit("ask:executing", eventBase(ex));
        notify(d, ex, "approved");
        const r = await execute(d, ex, ctx);
        if (r === RETRY) continue;
        return r;
      }
      case "executing": {
        if (row.decision !== "approve") return "refused_conflicting";
        if (ctx.redelivered) notify(d, row, "approved");
        const r = await execute(d, row, ctx);
        if (r === RETRY) continue;
        return r;
      }
      case "done":
        await publishExecuted(d, row);
        if (ctx.redelivered) notify(d, row, "executed");
        return "already_final";
      case "failed":
        await publishExecutionFailed(d, row);
        if (ctx.redelivered) notify(d, row, "execution_failed");
        return "already_final";
      case "cancelled":
        await publishCancelled(d, row);
        if (ctx.redelivered) notify(d, row, "rejected");
        return "already_final";
    }
  }
  throw new Error(`ask ${m.ask_id} kept changing state under this delivery`);
}

/**
 * After `MAX_RETRIES` failed deliveries: an ask still `decided` or `executing` on this message's
 * decision is finished without running (approve → `failed` with `RETRIES_EXHAUSTED` and
 * `ask.execution_failed`; reject → `cancelled`), so it does not hang forever.
 * @throws when Postgres or NATS are still down (the caller keeps the message and retries).
 */
export async function failAfterRetries(d: DecisionDeps, m: DecisionMessage): Promise<void> {
  const row = await getAsk(d.db, m.tenant, m.ask_id);
  if (!row || row.decision !== m.decision || (row.status !== "decided" && row.status !== "executing")) return;
  if (row.decision === "reject") {
    const c = await cancelRejected(d, row);
    if (c) {
      d.events.emit("ask:cancelled", eventBase(c));
      await publishCancelled(d, c);
    }
    return;
  }
  // The report carries the catalogue message only; the cause is in the worker's log.
  await fail(d, row, apiError("RETRIES_EXHAUSTED", "The approved action failed after all retries"));
}

/** A child logger for one decision. */
export function decisionLogger(logger: Logger, m: DecisionMessage): Logger {
  return bindContext(logger, {
    org_id: m.tenant.org_id,
    project_id: m.tenant.project_id,
    ask_id: m.ask_id,
    command_id: m.command_id,
    correlation_id: m.correlation_id,
  });
}

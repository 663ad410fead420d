/**
 * Asks: the held RED actions. Their decisions live in a per-ask register in JetStream
 * (`nexus.approval.<org>.<project>.<ask_id>`, see `AskEventMessage` in contracts), written
 * with optimistic concurrency by the gateway (decisions) and the expiry sweeper (expiry), so
 * JetStream decides which of two racing writers wins. The `asks` row mirrors the register:
 * the approval-worker applies its entries in sequence order; the command-worker runs the
 * approved action and records its outcome.
 *
 * ```
 *   open ──(N approvals)──▶ decided ──▶ executing ──▶ done
 *     │                        │            └───────▶ failed   (ACTION_CHANGED, POLICY_CHANGED,
 *     ├──(a reject)──▶ cancelled                                  CONNECTOR_FAILED, RETRIES_EXHAUSTED, …)
 *     └──(expiry entry)──▶ expired
 * ```
 *
 * Every transition is a conditional update inside one transaction together with the command
 * row and the append-only action history, and returns the row and its {@link Effects}.
 */
import {
  type ApiError,
  type Ask,
  AskAction,
  type AskEventMessage,
  apiError,
  askOutcome,
  type CommandMessage,
  type Decision,
  type DecisionEntry,
  subjects,
  type Tenant,
} from "@nexus/contracts";
import type { Transaction } from "kysely";
import { commandReport, getCommand } from "./commands.ts";
import type { AskRow, CommandRow, Database, Db } from "./db/schema.ts";
import { type Effects, noEffects, type Outcome, type PendingReport } from "./effects.ts";
import { hashCanonical } from "./hash.ts";
import { appendHistory } from "./history.ts";
import { entityMsgId, reportMsgId } from "./ids.ts";
import { notificationPending } from "./notifications.ts";
import {
  actionTypeOf,
  askCancelledReport,
  askCreatedReport,
  askDecidedReport,
  askExecutedReport,
  askExecutionFailedReport,
  askExpiredReport,
} from "./reports.ts";
import type { CommandPolicy } from "./risk.ts";
import { readSettings } from "./settings.ts";

export type { AskRow } from "./db/schema.ts";

/** The tenant of a row. */
export const tenantOf = (row: { org_id: string; project_id: string }): Tenant => ({
  org_id: row.org_id,
  project_id: row.project_id,
});

/** The wire form of an ask (`ask.created` and the snapshot). */
export function askToWire(row: AskRow): Ask {
  const approvals = row.decisions.map((d) => ({
    principal: d.principal,
    decision: d.decision,
    ...(d.note ? { note: d.note } : {}),
    at: d.decided_at,
  }));
  return {
    ask_id: row.ask_id,
    risk_level: row.risk_level as Ask["risk_level"],
    action: row.action as unknown as AskAction,
    expires_at: row.expires_at.toISOString(),
    status: row.status,
    action_hash: row.action_hash,
    policy_version: row.policy_version,
    approvals_required: row.approvals_required,
    ...(row.requested_by ? { requested_by: row.requested_by } : {}),
    ...(approvals.length ? { approvals } : {}),
    ...(row.decision ? { decision: row.decision } : {}),
    ...(row.decided_by ? { decided_by: row.decided_by } : {}),
    ...(row.decided_at ? { decided_at: row.decided_at.toISOString() } : {}),
    ...(row.decision_note ? { note: row.decision_note } : {}),
  };
}

/** One ask of a tenant; another tenant's ask reads as absent. */
export async function getAsk(db: Db, t: Tenant, askId: string, lock = false): Promise<AskRow | undefined> {
  let q = db
    .selectFrom("asks")
    .selectAll()
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("ask_id", "=", askId);
  if (lock) q = q.forUpdate();
  return q.executeTakeFirst();
}

/** A human-readable line describing a held action. */
export function describeAction(m: Pick<CommandMessage, "type" | "params">): string {
  if (m.type === "external_share.prepare") {
    const p = m.params as { recipient?: string; resource?: { title?: string }; channel?: string };
    return `Share "${p.resource?.title ?? "a resource"}" with ${p.recipient ?? "someone"} via ${p.channel ?? "?"}`;
  }
  if (m.type === "draft_email.create") {
    const p = m.params as { to?: string; subject?: string };
    return `Draft an email${p.to ? ` to ${p.to}` : ""}${p.subject ? ` about "${p.subject}"` : ""}`;
  }
  return `Run ${m.type}`;
}

function askCreatedPending(row: AskRow, cmd: Pick<CommandRow, "correlation_id">): PendingReport {
  return {
    tenant: tenantOf(row),
    msgId: reportMsgId(tenantOf(row), row.command_id, "ask.created"),
    report: askCreatedReport(row, askToWire(row)),
    causality: { correlation_id: cmd.correlation_id, command_id: row.command_id, ask_id: row.ask_id },
    ts: row.created_at.toISOString(),
  };
}

/**
 * RED: holds a received command for a human (docs/architecture.md invariant 2): creates its ask,
 * once (unique per (tenant, command_id), so a redelivery gets the same ask back), and moves the
 * command accepted → waiting_approval.
 * @returns the ask and `ask.created` (also when the ask already existed: the report is restated).
 */
export async function holdForApproval(
  tx: Transaction<Database>,
  cmd: CommandRow,
  o: { askId: string; policy: CommandPolicy; now: Date },
): Promise<Outcome<AskRow>> {
  const t = tenantOf(cmd);
  const action: AskAction = {
    type: cmd.type,
    command_id: cmd.command_id,
    params: cmd.params,
    summary: describeAction({ type: cmd.type, params: cmd.params }),
  };
  const inserted = await tx
    .insertInto("asks")
    .values({
      ask_id: o.askId,
      org_id: t.org_id,
      project_id: t.project_id,
      command_id: cmd.command_id,
      correlation_id: cmd.correlation_id,
      status: "open",
      risk_level: cmd.risk_level,
      action: JSON.stringify(action),
      action_hash: hashCanonical({ type: action.type, params: action.params }),
      policy_version: cmd.policy_version,
      expires_at: new Date(o.now.getTime() + o.policy.askTtlSeconds * 1000),
      requested_by: cmd.principal,
      approvals_required: o.policy.approvalsRequired,
      created_at: o.now,
      updated_at: o.now,
    })
    .onConflict((oc) => oc.columns(["org_id", "project_id", "command_id"]).doNothing())
    .returningAll()
    .executeTakeFirst();
  const row =
    inserted ??
    (await tx
      .selectFrom("asks")
      .selectAll()
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .where("command_id", "=", cmd.command_id)
      .executeTakeFirstOrThrow());
  await tx
    .updateTable("commands")
    .set({ status: "waiting_approval", ask_id: row.ask_id, updated_at: o.now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", cmd.command_id)
    .where("status", "=", "accepted")
    .execute();
  const effects = noEffects();
  effects.reports.push(askCreatedPending(row, cmd));
  return { row, effects };
}

/** Distinct approving principals among `decisions`. */
export function approvalCount(decisions: readonly DecisionEntry[]): number {
  return new Set(decisions.filter((d) => d.decision === "approve").map((d) => d.principal)).size;
}

/**
 * The `ask.decided` report of the k-th decision of an ask (step `decided.<k>`, ts = the
 * decision's time, causality = the decision's correlation id). The gateway publishes it right
 * after the register write; the approval-worker builds the same bytes when it applies it.
 */
export function decidedPending(row: AskRow, decisions: readonly DecisionEntry[], k: number): PendingReport {
  const entry = decisions[k] as DecisionEntry;
  const t = tenantOf(row);
  return {
    tenant: t,
    msgId: reportMsgId(t, row.ask_id, `decided.${k}`),
    report: askDecidedReport(row, entry, {
      have: approvalCount(decisions.slice(0, k + 1)),
      need: row.approvals_required,
    }),
    causality: { correlation_id: entry.correlation_id, command_id: row.command_id, ask_id: row.ask_id },
    ts: entry.decided_at,
  };
}

/** What the gateway should do with a decision request, given the ask and its register. */
export type DecisionPlan =
  /** Append `entry` to the register (expected last subject sequence = the register's last). */
  | { kind: "append"; entry: AskEventMessage }
  /** The same decision is already recorded (idempotent 202); `index` is its position. */
  | { kind: "already"; register: AskEventMessage; index: number }
  | { kind: "refuse"; code: "ASK_EXPIRED" | "ASK_ALREADY_DECIDED" | "SELF_APPROVAL_FORBIDDEN"; message: string };

/** A decision request as the gateway received it. */
export interface DecisionRequest {
  principal: string;
  decision: Decision;
  note?: string;
  correlationId: string;
  now: Date;
  /** The tenant's `allow_self_approval` (docs/contract.md "Roles and separation of duties"). */
  allowSelfApproval: boolean;
}

/**
 * Plans a decision against the ask's row and the newest register entry (`last`, or null when
 * nobody decided yet). Rules (docs/contract.md "POST /approvals/{ask_id}/decide", "Roles and
 * separation of duties"):
 * - a principal who already decided gets 202 for the same decision, 409
 *   `ASK_ALREADY_DECIDED` for another;
 * - once the ask is approved or rejected, the same decision is idempotent (202), another is 409;
 * - an expired ask, or one whose `expires_at` has passed, is 409 `ASK_EXPIRED`;
 * - the requester may not approve their own command unless the tenant allows it (403);
 * - otherwise the decision is appended, and the outcome recomputed (`askOutcome`).
 */
export function planDecision(row: AskRow, last: AskEventMessage | null, d: DecisionRequest): DecisionPlan {
  const decisions = last?.decisions ?? [];
  const outcome = last?.outcome ?? "pending";
  if (outcome === "expired") return { kind: "refuse", code: "ASK_EXPIRED", message: "The ask has expired" };
  const mine = decisions.findIndex((x) => x.principal === d.principal);
  if (mine >= 0 && last) {
    if ((decisions[mine] as DecisionEntry).decision === d.decision)
      return { kind: "already", register: last, index: mine };
    return { kind: "refuse", code: "ASK_ALREADY_DECIDED", message: "You already decided this ask differently" };
  }
  if ((outcome === "approved" || outcome === "rejected") && last) {
    const final = outcome === "approved" ? "approve" : "reject";
    if (final === d.decision) return { kind: "already", register: last, index: decisions.length - 1 };
    return {
      kind: "refuse",
      code: "ASK_ALREADY_DECIDED",
      message: `The ask was already ${outcome === "approved" ? "approved" : "rejected"}`,
    };
  }
  if (row.expires_at.getTime() <= d.now.getTime())
    return { kind: "refuse", code: "ASK_EXPIRED", message: "The ask has expired" };
  if (
    d.decision === "approve" &&
    !d.allowSelfApproval &&
    row.requested_by !== null &&
    row.requested_by === d.principal &&
    d.principal !== "anonymous"
  )
    return {
      kind: "refuse",
      code: "SELF_APPROVAL_FORBIDDEN",
      message: "The principal who sent a RED command may not approve it",
    };
  const entry: DecisionEntry = {
    principal: d.principal,
    decision: d.decision,
    ...(d.note ? { note: d.note } : {}),
    correlation_id: d.correlationId,
    decided_at: d.now.toISOString(),
  };
  const next = [...decisions, entry];
  return {
    kind: "append",
    entry: {
      v: 1,
      kind: "decision",
      tenant: tenantOf(row),
      ask_id: row.ask_id,
      command_id: row.command_id,
      decisions: next,
      need: row.approvals_required,
      outcome: askOutcome(next, row.approvals_required),
      at: entry.decided_at,
      correlation_id: d.correlationId,
    },
  };
}

/**
 * The expiry entry the sweeper appends to an open ask's register (expected last subject
 * sequence = the last entry's, or 0): if a decision won the race, the sweeper's write fails
 * and the ask is not expired.
 */
export function expiryEntry(row: AskRow, last: AskEventMessage | null, now: Date): AskEventMessage {
  return {
    v: 1,
    kind: "expiry",
    tenant: tenantOf(row),
    ask_id: row.ask_id,
    command_id: row.command_id,
    decisions: last?.decisions ?? [],
    need: row.approvals_required,
    outcome: "expired",
    at: now.toISOString(),
    correlation_id: row.correlation_id,
  };
}

/** Open asks whose `expires_at` has passed (oldest first), for the expiry sweeper. */
export async function dueOpenAsks(db: Db, now: Date, limit: number): Promise<AskRow[]> {
  return db
    .selectFrom("asks")
    .selectAll()
    .where("status", "=", "open")
    .where("expires_at", "<=", now)
    .orderBy("expires_at")
    .limit(limit)
    .execute();
}

/** The result of {@link applyAskEvent}. */
export type AppliedAskEvent =
  /** No ask with this id and command id for the tenant: the message is poison. */
  | { kind: "unknown" }
  /** `applied`: the row moved; `stale`: an entry at or below the applied sequence (a redelivery). */
  | { kind: "applied" | "stale"; row: AskRow; effects: Effects };

/**
 * Applies one register entry (sequence `seq`) to the ask's row: records the new decision (with
 * its history entry) and, when the entry's outcome is final, moves the ask: approved → `decided`
 * (and dispatches the action to the command-worker), rejected → `cancelled` (the command too),
 * expired → `expired` (the command cancelled). Entries at or below `register_seq` change nothing
 * (they arrive again after a crash, or out of order: the newest entry holds the whole state).
 * @returns the row and the entry's effects — restated for a stale entry, since the earlier
 *   delivery may have died before publishing them.
 */
export async function applyAskEvent(
  tx: Transaction<Database>,
  ev: AskEventMessage,
  seq: number,
  now: Date,
): Promise<AppliedAskEvent> {
  const t = ev.tenant;
  const row = await getAsk(tx, t, ev.ask_id, true);
  if (!row || row.command_id !== ev.command_id) return { kind: "unknown" };
  if (seq <= Number(row.register_seq) || row.status !== "open")
    return { kind: "stale", row, effects: eventEffects(row, ev) };

  const fresh = ev.decisions.slice(row.decisions.length);
  for (const d of fresh)
    await appendHistory(tx, t, {
      ask_id: row.ask_id,
      command_id: row.command_id,
      event: "decided",
      decision: d.decision,
      executor_id: d.principal,
      note: d.note ?? null,
      correlation_id: d.correlation_id,
      details: {
        approvals: { have: approvalCount(ev.decisions.slice(0, ev.decisions.indexOf(d) + 1)), need: ev.need },
      },
    });
  const deciding = ev.decisions[ev.decisions.length - 1];
  const base = { decisions: JSON.stringify(ev.decisions), register_seq: seq, updated_at: now };
  const set =
    ev.outcome === "approved" || ev.outcome === "rejected"
      ? {
          ...base,
          status: ev.outcome === "approved" ? ("decided" as const) : ("cancelled" as const),
          decision: ev.outcome === "approved" ? ("approve" as const) : ("reject" as const),
          decided_by: deciding?.principal ?? null,
          decision_note: deciding?.note ?? null,
          decision_correlation_id: deciding?.correlation_id ?? ev.correlation_id,
          decided_at: deciding ? new Date(deciding.decided_at) : now,
        }
      : ev.outcome === "expired"
        ? { ...base, status: "expired" as const }
        : base;
  const updated = await tx
    .updateTable("asks")
    .set(set)
    .where("ask_id", "=", row.ask_id)
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("status", "=", "open")
    .returningAll()
    .executeTakeFirstOrThrow();
  if (ev.outcome === "rejected" || ev.outcome === "expired") {
    await tx
      .updateTable("commands")
      .set({ status: "cancelled", finished_at: now, updated_at: now })
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .where("command_id", "=", row.command_id)
      .where("status", "=", "waiting_approval")
      .execute();
    await appendHistory(tx, t, {
      ask_id: row.ask_id,
      command_id: row.command_id,
      event: ev.outcome === "rejected" ? "cancelled" : "expired",
      decision: ev.outcome === "rejected" ? "reject" : null,
      executor_id: ev.outcome === "rejected" ? (deciding?.principal ?? "system") : "system",
      note: ev.outcome === "rejected" ? (deciding?.note ?? null) : null,
      correlation_id: ev.correlation_id,
      details: ev.outcome === "expired" ? { expires_at: row.expires_at.toISOString() } : null,
    });
  }
  return { kind: "applied", row: updated, effects: eventEffects(updated, ev) };
}

/** The effects of one register entry, from the entry and the row as it now stands. */
function eventEffects(row: AskRow, ev: AskEventMessage): Effects {
  const effects = noEffects();
  const t = tenantOf(row);
  if (ev.kind === "decision" && ev.decisions.length > 0)
    effects.reports.push(decidedPending(row, ev.decisions, ev.decisions.length - 1));
  if (ev.outcome === "rejected" && row.status === "cancelled") {
    effects.reports.push({
      tenant: t,
      msgId: reportMsgId(t, row.ask_id, "cancelled"),
      report: askCancelledReport(row),
      causality: decisionCausality(row),
      ts: row.updated_at.toISOString(),
    });
    effects.notifications.push(notificationPending(row, "rejected"));
  }
  if (ev.outcome === "expired" && row.status === "expired") {
    effects.reports.push({
      tenant: t,
      msgId: reportMsgId(t, row.ask_id, "expired"),
      report: askExpiredReport(row),
      causality: { correlation_id: row.correlation_id, command_id: row.command_id, ask_id: row.ask_id },
      ts: row.updated_at.toISOString(),
    });
    effects.notifications.push(notificationPending(row, "expired"));
  }
  if (ev.outcome === "approved" && row.decision === "approve") {
    effects.notifications.push(notificationPending(row, "approved"));
    if (row.status === "decided")
      effects.messages.push({
        tenant: t,
        msgId: entityMsgId(t, row.ask_id, "approved"),
        subject: subjects.approvedAction(t, row.command_id),
        correlationId: row.decision_correlation_id ?? row.correlation_id,
        headers: { "Nexus-Kind": "approved_action" },
        payload: {
          v: 1,
          kind: "approved_action",
          tenant: t,
          ask_id: row.ask_id,
          command_id: row.command_id,
          correlation_id: row.decision_correlation_id ?? row.correlation_id,
          approved_by: [...new Set(row.decisions.filter((d) => d.decision === "approve").map((d) => d.principal))],
          approved_at: (row.decided_at ?? row.updated_at).toISOString(),
        },
      });
  }
  return effects;
}

/** Causality of every report that follows a decision: the deciding decision's correlation id (LOCKED rule 4). */
export function decisionCausality(row: AskRow): { correlation_id: string; command_id: string; ask_id: string } {
  return {
    correlation_id: row.decision_correlation_id ?? row.correlation_id,
    command_id: row.command_id,
    ask_id: row.ask_id,
  };
}

/** How {@link startExecution} found an approved ask. */
export type ExecutionStart =
  /** Run the action now (the ask is `executing`; after a crash it may run again: actions are idempotent per ask). */
  | { kind: "run"; row: AskRow; action: AskAction; command: CommandRow }
  /** Nothing to run: the ask already finished (or failed verification just now); publish `effects`. */
  | { kind: "settled"; row: AskRow | undefined; effects: Effects };

/**
 * decided(approve) → executing, after checking "approve exactly what runs" (docs/contract.md,
 * docs/architecture.md invariant 2): the held action must still hash to `action_hash`, the command
 * row must carry the same type and params, and the tenant's `policy_version` must be the one
 * the ask was created under. A failed check fails the ask (`ACTION_CHANGED` / `POLICY_CHANGED`)
 * in the same transaction. An ask already `executing` (its worker died) runs again.
 */
export async function startExecution(
  tx: Transaction<Database>,
  t: Tenant,
  askId: string,
  now: Date,
): Promise<ExecutionStart> {
  const row = await getAsk(tx, t, askId, true);
  if (!row) return { kind: "settled", row: undefined, effects: noEffects() };
  if (row.status !== "decided" && row.status !== "executing")
    return { kind: "settled", row, effects: settledExecutionEffects(row) };
  if (row.decision !== "approve") return { kind: "settled", row, effects: noEffects() };
  const command = await getCommand(tx, t, row.command_id);
  const verdict = await verifyAction(tx, row, command);
  if (!verdict.ok || !command) {
    const error = verdict.ok ? apiError("ACTION_CHANGED", "The command of this ask no longer exists") : verdict.error;
    const failed = await failExecution(tx, t, askId, error, now);
    return { kind: "settled", row: failed.row, effects: failed.effects };
  }
  const executing =
    row.status === "executing"
      ? row
      : await tx
          .updateTable("asks")
          .set({ status: "executing", updated_at: now })
          .where("ask_id", "=", askId)
          .where("status", "=", "decided")
          .returningAll()
          .executeTakeFirstOrThrow();
  return { kind: "run", row: executing, action: verdict.action, command };
}

async function verifyAction(
  db: Db,
  row: AskRow,
  command: CommandRow | undefined,
): Promise<{ ok: true; action: AskAction } | { ok: false; error: ApiError }> {
  const parsed = AskAction.safeParse(row.action);
  if (!parsed.success) return { ok: false, error: apiError("ACTION_CHANGED", "The held action is malformed") };
  const action = parsed.data;
  if (hashCanonical({ type: action.type, params: action.params }) !== row.action_hash)
    return {
      ok: false,
      error: apiError("ACTION_CHANGED", "The held action no longer matches the approved action hash"),
    };
  if (
    !command ||
    command.type !== action.type ||
    hashCanonical({ type: command.type, params: command.params }) !== row.action_hash
  )
    return { ok: false, error: apiError("ACTION_CHANGED", "The command's arguments differ from the approved action") };
  const settings = await readSettings(db, tenantOf(row));
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

/** The effects restating a finished execution: `ask.executed` / `ask.execution_failed` and their notification. */
export function settledExecutionEffects(row: AskRow): Effects {
  const effects = noEffects();
  const t = tenantOf(row);
  if (row.status === "done") {
    effects.reports.push({
      tenant: t,
      msgId: reportMsgId(t, row.ask_id, "executed"),
      report: askExecutedReport(row, row.result),
      causality: decisionCausality(row),
      ts: row.updated_at.toISOString(),
    });
    effects.notifications.push(notificationPending(row, "executed"));
  } else if (row.status === "failed") {
    const error = (row.error as ApiError | null) ?? apiError("INTERNAL");
    effects.reports.push({
      tenant: t,
      msgId: reportMsgId(t, row.ask_id, "execution_failed"),
      report: askExecutionFailedReport(row, error),
      causality: decisionCausality(row),
      ts: row.updated_at.toISOString(),
    });
    effects.notifications.push(notificationPending(row, "execution_failed", error.code));
  }
  return effects;
}

/**
 * executing → done with `result`; the command → done with the same result; history `executed`
 * (executor = the deciding approver).
 * @returns the row and `ask.executed` + EXECUTED; restated when it was already done.
 */
export async function completeExecution(
  tx: Transaction<Database>,
  t: Tenant,
  askId: string,
  result: unknown,
  now: Date,
): Promise<{ row: AskRow | undefined; effects: Effects }> {
  return finishExecution(tx, t, askId, now, {
    from: ["executing"],
    status: "done",
    fields: { result: JSON.stringify(result) },
    event: "executed",
    details: { result },
  });
}

/**
 * decided | executing → failed with `error`; the command → failed; a share still waiting in the
 * outbox is withdrawn in the same transaction (a failed ask never sends anything afterwards);
 * history `execution_failed`.
 * @returns the row and `ask.execution_failed` + EXECUTION_FAILED; restated when already final.
 */
export async function failExecution(
  tx: Transaction<Database>,
  t: Tenant,
  askId: string,
  error: ApiError,
  now: Date,
): Promise<{ row: AskRow | undefined; effects: Effects }> {
  return finishExecution(tx, t, askId, now, {
    from: ["decided", "executing"],
    status: "failed",
    fields: { error: JSON.stringify(error) },
    event: "execution_failed",
    details: { error },
    after: (f) =>
      tx
        .updateTable("share_outbox")
        .set({ status: "failed", last_error: `withdrawn: ask failed with ${error.code}` })
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .where("ask_id", "=", f.ask_id)
        .where("status", "=", "queued")
        .execute(),
  });
}

/**
 * The one final transition of an approved action: the ask `from` → `status` with `fields`
 * (`result` or `error`, as JSON), its command (still `waiting_approval`) → the same status and
 * fields, `after` in the same transaction, one history entry `event` (executor = the deciding
 * approver, `details`). An ask not in `from` (already final, or unknown) changes nothing and its
 * settled effects are restated, so a redelivered job publishes the same reports again.
 */
async function finishExecution(
  tx: Transaction<Database>,
  t: Tenant,
  askId: string,
  now: Date,
  o: {
    from: ("decided" | "executing")[];
    status: "done" | "failed";
    fields: { result: string } | { error: string };
    event: "executed" | "execution_failed";
    details: Record<string, unknown>;
    after?: (row: AskRow) => Promise<unknown>;
  },
): Promise<{ row: AskRow | undefined; effects: Effects }> {
  const f = await tx
    .updateTable("asks")
    .set({ status: o.status, ...o.fields, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("ask_id", "=", askId)
    .where("status", "in", o.from)
    .returningAll()
    .executeTakeFirst();
  if (!f) {
    const row = await getAsk(tx, t, askId);
    return { row, effects: row ? settledExecutionEffects(row) : noEffects() };
  }
  await tx
    .updateTable("commands")
    .set({ status: o.status, ...o.fields, finished_at: now, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", f.command_id)
    .where("status", "=", "waiting_approval")
    .execute();
  await o.after?.(f);
  await appendHistory(tx, t, {
    ask_id: f.ask_id,
    command_id: f.command_id,
    event: o.event,
    decision: f.decision,
    executor_id: f.decided_by ?? "system",
    note: f.decision_note,
    correlation_id: f.decision_correlation_id ?? f.correlation_id,
    details: o.details,
  });
  return { row: f, effects: settledExecutionEffects(f) };
}

/** The asks a snapshot carries: every open or in-progress one, plus the newest `resolvedLimit` resolved ones. */
export async function listAsksForSnapshot(db: Db, t: Tenant, resolvedLimit: number): Promise<AskRow[]> {
  const active = await db
    .selectFrom("asks")
    .selectAll()
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("status", "in", ["open", "decided", "executing"])
    .orderBy("created_at")
    .execute();
  const resolved = await db
    .selectFrom("asks")
    .selectAll()
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("status", "in", ["done", "failed", "cancelled", "expired"])
    .orderBy("updated_at", "desc")
    .limit(resolvedLimit)
    .execute();
  return [...active, ...resolved.reverse()];
}

/** The `command.progress` of a held command while its approved action runs (entity = command id). */
export function askProgressPending(row: AskRow, stage: string, percent: number | undefined, now: Date): PendingReport {
  return commandReport(
    { org_id: row.org_id, project_id: row.project_id, command_id: row.command_id, correlation_id: row.correlation_id },
    `progress.${stage}`,
    {
      type: "command.progress",
      status: "running",
      title: `${actionTypeOf(row)}: ${stage}`,
      command: { command_id: row.command_id, type: actionTypeOf(row) },
      progress: { step: stage, ...(percent !== undefined ? { percent } : {}) },
    },
    now,
    { ask_id: row.ask_id, correlation_id: row.decision_correlation_id ?? row.correlation_id },
  );
}

/**
 * Commands: one row per accepted command, keyed by (org_id, project_id, command_id), moved
 * through its states by conditional updates so that a race or a redelivery has exactly one
 * winner (docs/architecture.md invariant 3). The command-worker owns these rows; the gateway writes
 * none.
 *
 * ```
 *   GREEN/YELLOW:  (message) ──receive──▶ running ──▶ done | failed
 *   RED:           (message) ──receive──▶ accepted ──hold──▶ waiting_approval ──▶ done | failed | cancelled
 *   requeue:       failed (retries spent, dead-lettered) ──requeue──▶ running (RED: accepted) ──▶ …
 * ```
 *
 * Each transition returns the row and the {@link Effects} it implies; the caller publishes them
 * after the commit. A transition that finds its target state already reached returns the
 * effects of that state again (so a publish lost to a crash is repeated on redelivery).
 */
import { type ApiError, type CommandMessage, subjects, type Tenant } from "@nexus/contracts";
import { sql } from "kysely";
import { preparedQuery } from "./db/database.ts";
import type { CommandRow, Db } from "./db/schema.ts";
import { type Effects, noEffects, type PendingReport } from "./effects.ts";
import { type ReportStep, reportMsgId } from "./ids.ts";
import {
  acceptedReport,
  completedReport,
  failedReport,
  progressReport,
  riskWarningReport,
  startedReport,
} from "./reports.ts";
import type { CommandPolicy } from "./risk.ts";

export type { CommandRow, Db } from "./db/schema.ts";

const tenantOfRow = (r: Pick<CommandRow, "org_id" | "project_id">): Tenant => ({
  org_id: r.org_id,
  project_id: r.project_id,
});

/** Statuses in which nothing more happens to a command. */
export const FINAL_COMMAND_STATUSES: ReadonlySet<CommandRow["status"]> = new Set(["done", "failed", "cancelled"]);

/**
 * A report about a command (entity = command id), ready to publish. After the command was
 * requeued n times (`requeues`), its step carries the suffix `.r<n>`: the run after a requeue
 * states new facts (started again, completed), which must not be dropped as duplicates of the
 * first run's reports.
 */
export function commandReport(
  row: Pick<CommandRow, "org_id" | "project_id" | "command_id" | "correlation_id"> & { requeues?: number },
  step: ReportStep,
  report: PendingReport["report"],
  ts: Date | string,
  extraCausality: { ask_id?: string; correlation_id?: string } = {},
): PendingReport {
  const tenant = tenantOfRow(row);
  const runStep = row.requeues ? (`${step}.r${row.requeues}` as const) : step;
  return {
    tenant,
    msgId: reportMsgId(tenant, row.command_id, runStep),
    report,
    causality: {
      correlation_id: extraCausality.correlation_id ?? row.correlation_id,
      command_id: row.command_id,
      ...(extraCausality.ask_id ? { ask_id: extraCausality.ask_id } : {}),
    },
    ts: typeof ts === "string" ? ts : ts.toISOString(),
  };
}

/**
 * The `command.accepted` report of a command message: the same bytes every time it is built (the
 * command-worker's first sight of the message, and each restatement).
 */
export function acceptedPending(
  m: Pick<CommandMessage, "tenant" | "command_id" | "type" | "correlation_id" | "accepted_at">,
): PendingReport {
  return {
    tenant: m.tenant,
    msgId: reportMsgId(m.tenant, m.command_id, "accepted"),
    report: acceptedReport(m),
    causality: { correlation_id: m.correlation_id, command_id: m.command_id },
    ts: m.accepted_at,
  };
}

/** The effects of a command having started: `command.started` (+ `risk.warning` when YELLOW). */
function startedEffects(row: CommandRow): PendingReport[] {
  const at = row.started_at ?? row.updated_at;
  const out = [commandReport(row, "started", startedReport(row), at)];
  if (row.risk_level === "YELLOW") out.push(commandReport(row, "risk.warning", riskWarningReport(row), at));
  return out;
}

/** The report of a finished command without an ask (`command.completed` / `command.failed`). */
function finalEffects(row: CommandRow): PendingReport[] {
  if (row.ask_id) return []; // asks report their own outcome (ask.executed / ask.execution_failed / ask.cancelled)
  const at = row.finished_at ?? row.updated_at;
  if (row.status === "done") return [commandReport(row, "completed", completedReport(row, row.result), at)];
  if (row.status === "failed") return [commandReport(row, "failed", failedReport(row, row.error as ApiError), at)];
  return [];
}

/** How {@link receiveCommand} found the command. */
export type Received =
  /** New: inserted as `running` (GREEN/YELLOW: run it) or `accepted` (RED: hold it). */
  | { kind: "inserted"; row: CommandRow; effects: Effects }
  /** Seen before with the same body (a redelivery, or a retry past the duplicate window). */
  | { kind: "existing"; row: CommandRow }
  /**
   * Seen before with another body: only possible when a client reuses a command id after
   * the command stream's retention dropped the first message. The first command stands.
   */
  | { kind: "conflict"; row: CommandRow };

/** One command message to record, as {@link receiveCommands} takes it. */
export interface ReceiveItem {
  m: CommandMessage;
  /** The tenant's policy for the command's type (`policyFor`). */
  policy: CommandPolicy;
  now: Date;
  /** Set when the message is a requeued dead letter that claims the command. */
  requeue?: RequeueClaim;
  /**
   * The command already ran (a quick handler run before it was recorded, see the command-worker):
   * record it as `done` with this result, started at `startedAt` and finished at `now`, in the
   * same single statement. Ignored for RED (a held command never runs before its approval).
   */
  done?: { result: unknown; startedAt: Date };
}

/**
 * Records a command message (first step of the command-worker). One statement: insert the row
 * in its first state under `policy` (`running` with `started_at` and `attempts = 1` for GREEN
 * and YELLOW, so a command that runs at once costs no second write; `accepted` for RED), or
 * find the existing one.
 * @returns see {@link Received}; the effects of an insert are `command.accepted` then
 *   (when running) `command.started` and, for YELLOW, `risk.warning`.
 */
export async function receiveCommand(
  db: Db,
  m: CommandMessage,
  policy: CommandPolicy,
  now: Date,
  requeue?: RequeueClaim,
): Promise<Received> {
  const [r] = await receiveCommands(db, [{ m, policy, now, ...(requeue ? { requeue } : {}) }]);
  return r as Received;
}

/**
 * {@link receiveCommand} for many messages in one statement (`insert … select from
 * jsonb_to_recordset(…) on conflict do nothing`): each row is inserted or found exactly as it
 * would be alone, so a group commit (`groupCommit`) may batch the messages of concurrent jobs.
 * Messages whose command already exists (a redelivery, or the same id twice in the batch) are
 * then read one by one.
 * @returns one {@link Received} per item, in order.
 */
export async function receiveCommands(db: Db, items: readonly ReceiveItem[]): Promise<Received[]> {
  if (items.length === 0) return [];
  const records = items.map(({ m, policy, now, requeue, done: ran }) => {
    const runs = policy.risk !== "RED";
    const done = runs ? ran : undefined;
    return {
      org_id: m.tenant.org_id,
      project_id: m.tenant.project_id,
      command_id: m.command_id,
      type: m.type,
      body_hash: m.body_hash,
      correlation_id: m.correlation_id,
      surface: m.surface ?? null,
      principal: m.principal,
      params: m.params,
      context: m.context,
      risk_level: policy.risk,
      policy_version: policy.policyVersion,
      status: done ? "done" : runs ? "running" : "accepted",
      attempts: runs ? 1 : 0,
      accepted_at: m.accepted_at,
      started_at: done ? done.startedAt.toISOString() : runs ? now.toISOString() : null,
      finished_at: done ? now.toISOString() : null,
      result: done ? (done.result === undefined ? null : done.result) : null,
      updated_at: now.toISOString(),
      requeued_from: requeue?.dlqSeq ?? null,
      requeue_msg_seq: requeue?.msgSeq ?? null,
    };
  });
  const rows = await preparedQuery<Omit<CommandRow, "params" | "context" | "result" | "error">>(
    db,
    "nexus_receive_commands",
    `insert into commands (org_id, project_id, command_id, type, body_hash, correlation_id, surface, principal,
       params, context, risk_level, policy_version, status, attempts, accepted_at, started_at, finished_at,
       result, updated_at, requeued_from, requeue_msg_seq)
     select org_id, project_id, command_id, type, body_hash, correlation_id, surface, principal,
       params, context, risk_level, policy_version, status, attempts, accepted_at, started_at, finished_at,
       result, updated_at, requeued_from, requeue_msg_seq
     from jsonb_to_recordset($1::jsonb) as x(org_id text, project_id text, command_id text, type text,
       body_hash text, correlation_id text, surface text, principal text, params jsonb, context jsonb,
       risk_level text, policy_version integer, status text, attempts integer, accepted_at timestamptz,
       started_at timestamptz, finished_at timestamptz, result jsonb, updated_at timestamptz,
       requeued_from bigint, requeue_msg_seq bigint)
     on conflict (org_id, project_id, command_id) do nothing
     returning ${LEAN_COLUMNS}`,
    [JSON.stringify(records)],
  );
  const inserted = new Map(rows.map((r) => [rowKey(r.org_id, r.project_id, r.command_id), r]));
  return Promise.all(
    items.map(async ({ m, policy, done }): Promise<Received> => {
      const key = rowKey(m.tenant.org_id, m.tenant.project_id, m.command_id);
      const lean = inserted.get(key);
      if (lean) {
        inserted.delete(key); // the same id twice in one batch: the second one finds it below
        const result = lean.status === "done" ? (done?.result ?? null) : null;
        const row: CommandRow = { ...lean, params: m.params, context: m.context, result, error: null };
        const effects = noEffects();
        effects.reports.push(acceptedPending(m));
        if (policy.risk !== "RED") effects.reports.push(...startedEffects(row));
        effects.reports.push(...finalEffects(row));
        return { kind: "inserted", row, effects };
      }
      const row = await getCommand(db, m.tenant, m.command_id);
      if (!row) throw new Error(`command ${m.command_id} vanished after a conflicting insert`);
      return row.body_hash === m.body_hash ? { kind: "existing", row } : { kind: "conflict", row };
    }),
  );
}

const rowKey = (org: string, project: string, commandId: string) => `${org}\u0000${project}\u0000${commandId}`;

/** Every column but the JSON payloads (params, context, result, error), which the caller already has. */
const LEAN_COLUMNS =
  "org_id, project_id, command_id, type, body_hash, correlation_id, surface, principal, risk_level, policy_version, status, ask_id, attempts, requeues, requeued_from, requeue_msg_seq, accepted_at, started_at, finished_at, updated_at";

/**
 * The effects that restate where an existing command stands, for a redelivered message whose
 * earlier delivery may have died between commit and publish: `accepted` (+ `started` while it
 * runs), or its final report. A command held for approval is restated by its ask
 * (`holdForApproval` returns `ask.created` again).
 *
 * A finished command may have been recorded as done in one statement (a quick handler), so its
 * `accepted` and `started` may be lost with that delivery too. With `window` they are restated
 * before the final report while their first publish — right after the worker recorded the
 * command, so at or after `started_at` — is younger than the JetStream duplicate window (less a
 * 5 s margin): a copy that was stored is then dropped by its `Nats-Msg-Id`, and a lost one
 * comes back in its place, before the final report. Older ones are not restated: past the
 * window a copy would be stored again, after the outcome.
 * @param window `now` and the reports stream's duplicate window, ms.
 */
export function restateCommand(
  m: CommandMessage,
  row: CommandRow,
  window?: { now: Date; duplicateWindowMs: number },
): Effects {
  const effects = noEffects();
  const young = (at: Date | string | null) =>
    window !== undefined &&
    at !== null &&
    window.now.getTime() - new Date(at).getTime() < window.duplicateWindowMs - DUPLICATE_WINDOW_MARGIN_MS;
  const live = row.status === "accepted" || row.status === "running";
  const finished = FINAL_COMMAND_STATUSES.has(row.status) && !row.ask_id;
  // `command.accepted` was first published by the worker right after it recorded the command
  // (not at the gateway's acceptance time, which may be long before for a queued command), so
  // its window runs from the recorded start, as `command.started`'s does.
  if (live || (finished && young(row.started_at ?? row.accepted_at))) effects.reports.push(acceptedPending(m));
  if (row.status === "running" || (finished && young(row.started_at))) effects.reports.push(...startedEffects(row));
  effects.reports.push(...finalEffects(row));
  return effects;
}

/** What {@link restateCommand} leaves of the duplicate window for the time a publish takes, ms. */
const DUPLICATE_WINDOW_MARGIN_MS = 5000;

/** Reads one command of a tenant; `undefined` when absent (or another tenant's). */
export async function getCommand(db: Db, t: Tenant, commandId: string): Promise<CommandRow | undefined> {
  return db
    .selectFrom("commands")
    .selectAll()
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .executeTakeFirst();
}

/**
 * A redelivered command that was `running` (its worker died, or the handler failed and is
 * being retried) runs again: `attempts + 1`.
 * @returns the row when this delivery may run the handler; `undefined` when the command is no
 *   longer `running` (another delivery finished it).
 */
export async function resumeCommand(db: Db, t: Tenant, commandId: string, now: Date): Promise<CommandRow | undefined> {
  return db
    .updateTable("commands")
    .set({ attempts: sql`attempts + 1`, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "=", "running")
    .returningAll()
    .executeTakeFirst();
}

/**
 * running → done with `result`.
 * @returns the row and `command.completed`; when the command had already left `running`, the
 *   row as it is and the report of that state (nothing changes).
 */
export async function completeCommand(
  db: Db,
  t: Tenant,
  commandId: string,
  result: unknown,
  now: Date,
): Promise<{ row: CommandRow | undefined; effects: Effects }> {
  const [r] = await completeCommands(db, [{ tenant: t, commandId, result, now }]);
  return r as { row: CommandRow | undefined; effects: Effects };
}

/** One finished command, as {@link completeCommands} takes it. */
export interface CompleteItem {
  tenant: Tenant;
  commandId: string;
  /** The handler's result (any JSON). */
  result: unknown;
  now: Date;
}

/**
 * {@link completeCommand} for many commands in one statement (`update … from
 * jsonb_to_recordset(…)`, each row under its own `status = 'running'` condition), so a group
 * commit may batch the completions of concurrent jobs. Commands that had left `running` are
 * then read one by one.
 * @returns one result per item, in order.
 */
export async function completeCommands(
  db: Db,
  items: readonly CompleteItem[],
): Promise<{ row: CommandRow | undefined; effects: Effects }[]> {
  if (items.length === 0) return [];
  const records = items.map((i) => ({
    org_id: i.tenant.org_id,
    project_id: i.tenant.project_id,
    command_id: i.commandId,
    // undefined (no result) is stored as SQL null, as `$n::jsonb` with an undefined value was
    result: i.result === undefined ? null : i.result,
    now: i.now.toISOString(),
  }));
  const rows = await preparedQuery<Omit<CommandRow, "params" | "context" | "result" | "error">>(
    db,
    "nexus_complete_commands",
    `update commands c set status = 'done', result = x.result, finished_at = x.now, updated_at = x.now
     from jsonb_to_recordset($1::jsonb) as x(org_id text, project_id text, command_id text, result jsonb, now timestamptz)
     where c.org_id = x.org_id and c.project_id = x.project_id and c.command_id = x.command_id
       and c.status = 'running' and c.ask_id is null
     returning ${LEAN_COLUMNS.split(", ")
       .map((col) => `c.${col}`)
       .join(", ")}`,
    [JSON.stringify(records)],
  );
  const done = new Map(rows.map((r) => [rowKey(r.org_id, r.project_id, r.command_id), r]));
  return Promise.all(
    items.map((i) => {
      const lean = done.get(rowKey(i.tenant.org_id, i.tenant.project_id, i.commandId));
      const row = lean ? { ...lean, params: {}, context: {}, result: i.result, error: null } : undefined;
      return settled(db, i.tenant, i.commandId, row);
    }),
  );
}

/**
 * accepted | running → failed with `error` (a handler's permanent failure, or retries spent).
 * @returns like {@link completeCommand}, with `command.failed`.
 */
export async function failCommand(
  db: Db,
  t: Tenant,
  commandId: string,
  error: ApiError,
  now: Date,
): Promise<{ row: CommandRow | undefined; effects: Effects }> {
  const row = await db
    .updateTable("commands")
    .set({ status: "failed", error: JSON.stringify(error), finished_at: now, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "in", ["accepted", "running"])
    .where("ask_id", "is", null)
    .returningAll()
    .executeTakeFirst();
  return settled(db, t, commandId, row);
}

async function settled(
  db: Db,
  t: Tenant,
  commandId: string,
  changed: CommandRow | undefined,
): Promise<{ row: CommandRow | undefined; effects: Effects }> {
  const row = changed ?? (await getCommand(db, t, commandId));
  const effects = noEffects();
  if (row) effects.reports.push(...finalEffects(row));
  return { row, effects };
}

/**
 * Which requeue (dead letter `dlqSeq`, delivered as the message at `msgSeq` of NEXUS_COMMANDS)
 * claims a command: only a redelivery of that very message may carry its run on.
 */
export interface RequeueClaim {
  dlqSeq: number;
  msgSeq: number;
}

/** Whether `row` was claimed by this requeue message (so this delivery may carry its run on). */
export function claimedBy(row: Pick<CommandRow, "requeued_from" | "requeue_msg_seq">, c: RequeueClaim): boolean {
  return Number(row.requeued_from) === c.dlqSeq && Number(row.requeue_msg_seq) === c.msgSeq;
}

/** How {@link requeueCommand} found the command. */
export type Requeued =
  /** This dead letter's requeue applied now: the command is `running` again (RED: `accepted`). */
  | { kind: "requeued"; row: CommandRow }
  /** Applied before by this very message (a redelivery): carry on like a redelivered command. */
  | { kind: "applied"; row: CommandRow }
  /**
   * Nothing to run: not failed (another copy of the same requeue runs it, or it finished), or
   * an older dead letter than the last one requeued: restate only.
   */
  | { kind: "stale"; row: CommandRow }
  /** No row: the original never got one (it was poison); handle it as a new command. */
  | { kind: "absent" };

/**
 * failed → running (RED: accepted) for the requeue of dead letter `dlqSeq`: only a command whose
 * retries were spent (`failed`, no ask), with the same body, not requeued from this dead letter
 * or a newer one. `attempts`, `requeues` + 1; `requeued_from`, `requeue_msg_seq` = the claim;
 * result and error cleared. So each dead letter runs its command again at most once, however
 * often its requeue is published or delivered, and two copies of one requeue never run it at
 * the same time (docs/architecture.md invariant 3).
 */
export async function requeueCommand(
  db: Db,
  t: Tenant,
  commandId: string,
  bodyHash: string,
  claim: RequeueClaim,
  now: Date,
): Promise<Requeued> {
  const dlqSeq = claim.dlqSeq;
  const row = await db
    .updateTable("commands")
    .set({
      status: sql`case when risk_level = 'RED' then 'accepted' else 'running' end`,
      attempts: sql`attempts + 1`,
      requeues: sql`requeues + 1`,
      requeued_from: dlqSeq,
      requeue_msg_seq: claim.msgSeq,
      result: null,
      error: null,
      started_at: now,
      finished_at: null,
      updated_at: now,
    })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("body_hash", "=", bodyHash)
    .where("status", "=", "failed")
    .where("ask_id", "is", null)
    .where((eb) => eb.or([eb("requeued_from", "is", null), eb("requeued_from", "<", String(dlqSeq))]))
    .returningAll()
    .executeTakeFirst();
  if (row) return { kind: "requeued", row };
  const existing = await getCommand(db, t, commandId);
  if (!existing) return { kind: "absent" };
  if (claimedBy(existing, claim)) return { kind: "applied", row: existing };
  return { kind: "stale", row: existing };
}

/**
 * The effects of a requeued command starting again: `command.started` (+ `risk.warning`) with
 * the `.r<n>` ids of its run (a requeued RED command reports through its new ask instead).
 */
export function requeuedEffects(row: CommandRow): Effects {
  const effects = noEffects();
  if (row.status === "running") effects.reports.push(...startedEffects(row));
  return effects;
}

/** A coarse `command.progress` report (entity = command id, step `progress.<stage>`). */
export function progressPending(
  row: Pick<CommandRow, "org_id" | "project_id" | "command_id" | "correlation_id" | "type">,
  stage: string,
  percent: number | undefined,
  now: Date,
  correlationId?: string,
): PendingReport {
  return commandReport(row, `progress.${stage}`, progressReport(row, stage, percent), now, {
    ...(correlationId ? { correlation_id: correlationId } : {}),
  });
}

/** The newest `limit` commands of a tenant, newest first (the snapshot's worklog). */
export async function listRecentCommands(db: Db, t: Tenant, limit: number): Promise<CommandRow[]> {
  return db
    .selectFrom("commands")
    .selectAll()
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .orderBy("updated_at", "desc")
    .limit(limit)
    .execute();
}

/** The subject a command message is published on (re-exported for callers that only hold a row). */
export const commandSubject = (t: Tenant, commandId: string): string => subjects.command(t, commandId);

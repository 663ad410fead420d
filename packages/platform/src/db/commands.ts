import type { CommandMessage, Tenant } from "@nexus/contracts";
import { type Kysely, type Selectable, sql, type Transaction } from "kysely";
import type { CommandsTable, Database } from "./schema.ts";

type Db = Kysely<Database> | Transaction<Database>;
/** A commands row. */
export type CommandRow = Selectable<CommandsTable>;

const byKey = (t: Tenant, commandId: string) => ({ org_id: t.org_id, project_id: t.project_id, command_id: commandId });

/**
 * Inserts a command if its key is new.
 * @returns the inserted row, or `undefined` when (tenant, command_id) already exists
 *   (concurrent inserts block on the first one's transaction, then see the conflict).
 */
export async function insertCommand(db: Db, m: CommandMessage, bodyHash: string): Promise<CommandRow | undefined> {
  return db
    .insertInto("commands")
    .values({
      ...byKey(m.tenant, m.command_id),
      type: m.type,
      body_hash: bodyHash,
      correlation_id: m.correlation_id,
      surface: m.surface ?? null,
      principal: m.principal,
      params: JSON.stringify(m.params),
      context: JSON.stringify(m.context),
      risk_level: m.risk_level,
      policy_version: m.policy_version,
      status: "accepted",
      accepted_at: m.accepted_at,
      updated_at: m.accepted_at,
    })
    .onConflict((oc) => oc.columns(["org_id", "project_id", "command_id"]).doNothing())
    .returningAll()
    .executeTakeFirst();
}

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

/** Records the report_id of `command.accepted` (first writer wins). */
export async function setAcceptedReportId(db: Db, t: Tenant, commandId: string, reportId: string): Promise<void> {
  await db
    .updateTable("commands")
    .set({ accepted_report_id: reportId })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("accepted_report_id", "is", null)
    .execute();
}

/**
 * accepted | running → running (a redelivery after a crash resumes a running command).
 * @returns the row when this delivery may run the handler; `undefined` when the command is
 *   already finished or waiting for approval.
 */
export async function startCommand(db: Db, t: Tenant, commandId: string, now: Date): Promise<CommandRow | undefined> {
  return db
    .updateTable("commands")
    .set({
      status: "running",
      started_at: sql`coalesce(started_at, ${now})`,
      attempts: sql`attempts + 1`,
      updated_at: now,
    })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "in", ["accepted", "running"])
    .returningAll()
    .executeTakeFirst();
}

/** running → done with `result`. @returns the row, or `undefined` when another delivery finished it first. */
export async function completeCommand(
  db: Db,
  t: Tenant,
  commandId: string,
  result: unknown,
  now: Date,
): Promise<CommandRow | undefined> {
  return db
    .updateTable("commands")
    .set({ status: "done", result: JSON.stringify(result), finished_at: now, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "in", ["running", "waiting_approval"])
    .returningAll()
    .executeTakeFirst();
}

/** accepted | running | waiting_approval → failed with `error`. @returns the row or `undefined` if already final. */
export async function failCommand(
  db: Db,
  t: Tenant,
  commandId: string,
  error: unknown,
  now: Date,
): Promise<CommandRow | undefined> {
  return db
    .updateTable("commands")
    .set({ status: "failed", error: JSON.stringify(error), finished_at: now, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "in", ["accepted", "running", "waiting_approval"])
    .returningAll()
    .executeTakeFirst();
}

/** accepted → waiting_approval, linking the ask. @returns the row or `undefined` if not in `accepted`. */
export async function holdCommandForAsk(
  db: Db,
  t: Tenant,
  commandId: string,
  askId: string,
  now: Date,
): Promise<CommandRow | undefined> {
  return db
    .updateTable("commands")
    .set({ status: "waiting_approval", ask_id: askId, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "=", "accepted")
    .returningAll()
    .executeTakeFirst();
}

/** waiting_approval → cancelled (rejected or expired ask). */
export async function cancelCommand(db: Db, t: Tenant, commandId: string, now: Date): Promise<void> {
  await db
    .updateTable("commands")
    .set({ status: "cancelled", finished_at: now, updated_at: now })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("command_id", "=", commandId)
    .where("status", "=", "waiting_approval")
    .execute();
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

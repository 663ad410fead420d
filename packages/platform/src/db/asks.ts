import type { Ask, AskAction, Decision, Tenant } from "@nexus/contracts";
import type { Kysely, Selectable, Transaction } from "kysely";
import type { AsksTable, Database } from "./schema.ts";

type Db = Kysely<Database> | Transaction<Database>;
/** An asks row. */
export type AskRow = Selectable<AsksTable>;

const tenantIs = (t: Tenant) => (eb: any) => eb.and([eb("org_id", "=", t.org_id), eb("project_id", "=", t.project_id)]);

/** Input of {@link createAsk}. */
export interface NewAsk {
  ask_id: string;
  tenant: Tenant;
  command_id: string;
  correlation_id: string;
  risk_level: string;
  action: AskAction;
  action_hash: string;
  policy_version: number;
  expires_at: Date;
  now: Date;
}

/**
 * Creates the ask of a command, once: a redelivered command finds the existing ask
 * (unique per (tenant, command_id)) and gets it back instead of a second one.
 */
export async function createAsk(db: Db, a: NewAsk): Promise<{ row: AskRow; created: boolean }> {
  const inserted = await db
    .insertInto("asks")
    .values({
      ask_id: a.ask_id,
      org_id: a.tenant.org_id,
      project_id: a.tenant.project_id,
      command_id: a.command_id,
      correlation_id: a.correlation_id,
      status: "open",
      risk_level: a.risk_level,
      action: JSON.stringify(a.action),
      action_hash: a.action_hash,
      policy_version: a.policy_version,
      expires_at: a.expires_at,
      created_at: a.now,
      updated_at: a.now,
    })
    .onConflict((oc) => oc.columns(["org_id", "project_id", "command_id"]).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { row: inserted, created: true };
  const row = await db
    .selectFrom("asks")
    .selectAll()
    .where(tenantIs(a.tenant))
    .where("command_id", "=", a.command_id)
    .executeTakeFirstOrThrow();
  return { row, created: false };
}

/** One ask of a tenant; another tenant's ask reads as absent. `lock` takes a row lock in a transaction. */
export async function getAsk(db: Db, t: Tenant, askId: string, lock = false): Promise<AskRow | undefined> {
  let q = db.selectFrom("asks").selectAll().where(tenantIs(t)).where("ask_id", "=", askId);
  if (lock) q = q.forUpdate();
  return q.executeTakeFirst();
}

/** Input of {@link decideAsk}. */
export interface DecisionInput {
  decision: Decision;
  decided_by: string;
  note: string | null;
  correlation_id: string;
  now: Date;
}

/**
 * open → decided, only while unexpired: the conditional update that gives a race exactly one
 * winner. @returns the row when this call decided it, else `undefined`.
 */
export async function decideAsk(db: Db, t: Tenant, askId: string, d: DecisionInput): Promise<AskRow | undefined> {
  return db
    .updateTable("asks")
    .set({
      status: "decided",
      decision: d.decision,
      decided_by: d.decided_by,
      decision_note: d.note,
      decision_correlation_id: d.correlation_id,
      decided_at: d.now,
      updated_at: d.now,
    })
    .where(tenantIs(t))
    .where("ask_id", "=", askId)
    .where("status", "=", "open")
    .where("expires_at", ">", d.now)
    .returningAll()
    .executeTakeFirst();
}

/** Records the report_id of `ask.decided` (first writer wins). */
export async function setDecidedReportId(db: Db, t: Tenant, askId: string, reportId: string): Promise<void> {
  await db
    .updateTable("asks")
    .set({ decided_report_id: reportId })
    .where(tenantIs(t))
    .where("ask_id", "=", askId)
    .where("decided_report_id", "is", null)
    .execute();
}

/**
 * Moves an ask from one state to another (conditional update).
 * @returns the row when the transition happened, `undefined` when the ask was not in `from`.
 */
export async function transitionAsk(
  db: Db,
  t: Tenant,
  askId: string,
  from: AskRow["status"][],
  to: AskRow["status"],
  now: Date,
  extra: { result?: unknown; error?: unknown } = {},
): Promise<AskRow | undefined> {
  return db
    .updateTable("asks")
    .set({
      status: to,
      updated_at: now,
      ...(extra.result !== undefined ? { result: JSON.stringify(extra.result) } : {}),
      ...(extra.error !== undefined ? { error: JSON.stringify(extra.error) } : {}),
    })
    .where(tenantIs(t))
    .where("ask_id", "=", askId)
    .where("status", "in", from)
    .returningAll()
    .executeTakeFirst();
}

/**
 * Expires due open asks, at most `limit`, skipping rows other replicas hold
 * (`FOR UPDATE SKIP LOCKED`), so each ask expires exactly once.
 */
export async function expireDueAsks(db: Db, now: Date, limit: number): Promise<AskRow[]> {
  return db
    .updateTable("asks")
    .set({ status: "expired", updated_at: now })
    .where("ask_id", "in", (eb) =>
      eb
        .selectFrom("asks")
        .select("ask_id")
        .where("status", "=", "open")
        .where("expires_at", "<=", now)
        .orderBy("expires_at")
        .limit(limit)
        .forUpdate()
        .skipLocked(),
    )
    .where("status", "=", "open")
    .returningAll()
    .execute();
}

/** Expired asks whose `ask.expired` report is not yet confirmed published (crash recovery). */
export async function unreportedExpiredAsks(db: Db, limit: number): Promise<AskRow[]> {
  return db
    .selectFrom("asks")
    .selectAll()
    .where("status", "=", "expired")
    .where("expiry_reported", "=", false)
    .orderBy("updated_at")
    .limit(limit)
    .execute();
}

/** Marks an expired ask's report as published. */
export async function markExpiryReported(db: Db, askId: string): Promise<void> {
  await db.updateTable("asks").set({ expiry_reported: true }).where("ask_id", "=", askId).execute();
}

/** The asks a snapshot carries: every open or in-progress one, plus the newest `resolvedLimit` resolved ones. */
export async function listAsksForSnapshot(db: Db, t: Tenant, resolvedLimit: number): Promise<AskRow[]> {
  const active = await db
    .selectFrom("asks")
    .selectAll()
    .where(tenantIs(t))
    .where("status", "in", ["open", "decided", "executing"])
    .orderBy("created_at")
    .execute();
  const resolved = await db
    .selectFrom("asks")
    .selectAll()
    .where(tenantIs(t))
    .where("status", "in", ["done", "failed", "cancelled", "expired"])
    .orderBy("updated_at", "desc")
    .limit(resolvedLimit)
    .execute();
  return [...active, ...resolved.reverse()];
}

/** The wire form of an ask (ask.created and snapshot). */
export function askToWire(row: AskRow): Ask {
  return {
    ask_id: row.ask_id,
    risk_level: row.risk_level as Ask["risk_level"],
    action: row.action as unknown as AskAction,
    expires_at: row.expires_at.toISOString(),
    status: row.status,
    action_hash: row.action_hash,
    policy_version: row.policy_version,
    ...(row.decision ? { decision: row.decision } : {}),
    ...(row.decided_by ? { decided_by: row.decided_by } : {}),
  };
}

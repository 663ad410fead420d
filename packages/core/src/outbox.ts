/**
 * The report outbox: reports of changes the gateway commits itself (settings), stored in the
 * same transaction as the change. The gateway publishes the row right after the commit and
 * deletes it; a relay (`relayOutbox` in the gateway) publishes rows that are still there after
 * a grace period — the inline publish failed or the process died — using the row's
 * `Nats-Msg-Id`, so a row published twice is stored once. Rows are leased (`leased_until`)
 * rather than locked, so no transaction is held across a publish.
 */
import type { Tenant } from "@nexus/contracts";
import type { Selectable, Transaction } from "kysely";
import type { Database, Db, ReportOutboxTable } from "./db/schema.ts";

/** An outbox row. */
export type OutboxRow = Selectable<ReportOutboxTable>;

/** Stores one message in the outbox; leased for `graceMs` so the relay leaves the inline publish alone. */
export async function insertOutbox(
  tx: Transaction<Database>,
  o: {
    tenant: Tenant;
    msgId: string;
    subject: string;
    payload: string;
    correlationId: string;
    now: Date;
    graceMs?: number;
  },
): Promise<string> {
  const row = await tx
    .insertInto("report_outbox")
    .values({
      org_id: o.tenant.org_id,
      project_id: o.tenant.project_id,
      msg_id: o.msgId,
      subject: o.subject,
      payload: o.payload,
      correlation_id: o.correlationId,
      leased_until: new Date(o.now.getTime() + (o.graceMs ?? 5000)),
    })
    .onConflict((oc) => oc.column("msg_id").doUpdateSet({ msg_id: o.msgId }))
    .returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

/** Removes a published row. */
export async function deleteOutbox(db: Db, id: string): Promise<void> {
  await db.deleteFrom("report_outbox").where("id", "=", id).execute();
}

/**
 * Leases up to `limit` due rows (lease expired), oldest first, for `leaseMs`: one short
 * statement (`FOR UPDATE SKIP LOCKED` inside an UPDATE), so concurrent relays never take the
 * same row and nothing stays locked while the caller publishes.
 */
export async function leaseDueOutbox(db: Db, now: Date, leaseMs: number, limit: number): Promise<OutboxRow[]> {
  return db
    .updateTable("report_outbox")
    .set({ leased_until: new Date(now.getTime() + leaseMs) })
    .where("id", "in", (eb) =>
      eb
        .selectFrom("report_outbox")
        .select("id")
        .where("leased_until", "<=", now)
        .orderBy("id")
        .limit(limit)
        .forUpdate()
        .skipLocked(),
    )
    .returningAll()
    .execute()
    .then((rows) => rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)));
}

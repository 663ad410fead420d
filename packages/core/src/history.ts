import type { Tenant } from "@nexus/contracts";
import type { Insertable, Kysely, Selectable, Transaction } from "kysely";
import type { ActionHistoryTable, Database } from "./db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;
/** One action-history entry. */
export type HistoryRow = Selectable<ActionHistoryTable>;

/** Appends one entry to the append-only action history. */
export async function appendHistory(
  db: Db,
  t: Tenant,
  e: Omit<Insertable<ActionHistoryTable>, "org_id" | "project_id" | "details"> & { details?: unknown },
): Promise<void> {
  await db
    .insertInto("action_history")
    .values({
      ...e,
      org_id: t.org_id,
      project_id: t.project_id,
      details: e.details === undefined ? null : JSON.stringify(e.details),
    })
    .execute();
}

/** The history of one ask, oldest first. */
export async function historyOfAsk(db: Db, t: Tenant, askId: string): Promise<HistoryRow[]> {
  return db
    .selectFrom("action_history")
    .selectAll()
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("ask_id", "=", askId)
    .orderBy("id")
    .execute();
}

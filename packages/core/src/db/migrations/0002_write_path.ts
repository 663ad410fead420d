import { type Kysely, sql } from "kysely";

/**
 * The publish-first write path:
 * - asks mirror their JetStream register (`nexus.approval.<org>.<project>.<ask_id>`):
 *   `decisions` (every decision so far), `approvals_required`, `register_seq` (the last
 *   register entry applied, so older entries are skipped), and `requested_by`;
 *   expiry now goes through the register, so `expiry_reported` goes;
 * - commands no longer record the accepted report id (the gateway writes no rows);
 * - `report_outbox`: reports of changes the gateway commits itself (settings), published after
 *   the commit and re-published by a relay if that publish was lost.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("asks")
    .addColumn("requested_by", "text")
    .addColumn("approvals_required", "integer", (c) => c.notNull().defaultTo(1))
    .addColumn("decisions", "jsonb", (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("register_seq", "bigint", (c) => c.notNull().defaultTo(0))
    .dropColumn("expiry_reported")
    .dropColumn("decided_report_id")
    .execute();
  await db.schema.alterTable("commands").dropColumn("accepted_report_id").execute();

  await db.schema
    .createTable("report_outbox")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("msg_id", "text", (c) => c.notNull().unique())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("payload", "text", (c) => c.notNull())
    .addColumn("correlation_id", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("leased_until", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("report_outbox_due_idx").on("report_outbox").columns(["leased_until", "id"]).execute();
}

/** Reverts {@link up}. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("report_outbox").ifExists().execute();
  await db.schema.alterTable("commands").addColumn("accepted_report_id", "text").execute();
  await db.schema
    .alterTable("asks")
    .dropColumn("requested_by")
    .dropColumn("approvals_required")
    .dropColumn("decisions")
    .dropColumn("register_seq")
    .addColumn("expiry_reported", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("decided_report_id", "text")
    .execute();
}

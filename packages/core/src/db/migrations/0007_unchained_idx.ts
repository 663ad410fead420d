import type { Kysely } from "kysely";
import { sql } from "kysely";

/**
 * The archiver's "rows stored earlier, still unchained" read (`appendReports`) runs once per
 * batch. Without an index of its own the planner walks a tenant's rows through another index
 * and filters `hash is null`, so the read grows with the archive (measured: 7–8 ms per batch
 * after 14,000 reports on a fresh database). Unchained rows are few (usually none): a partial
 * index over them keeps the read constant whatever the archive's size and its statistics.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index if not exists agent_report_events_unchained_idx
    on agent_report_events (org_id, project_id, report_id) where hash is null`.execute(db);
}

/** Reverts {@link up}. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists agent_report_events_unchained_idx`.execute(db);
}

import { type Kysely, sql } from "kysely";

/**
 * The report archive (docs/archive.md):
 * - `agent_report_events`: every report of NEXUS_REPORTS, keyed by tenant and `report_id` (the
 *   JetStream sequence), with the exact JSON as published (`payload`, text: jsonb would reorder
 *   keys and the replayed frame would differ) and its place in the tenant's hash chain
 *   (`prev_hash`, `hash`; both null until the row is chained).
 * - `agent_report_chains`: one row per tenant, the chain head (`last_report_id`, `last_hash`),
 *   what the archive is complete for (`complete_after`) and what was erased (`purged_through`).
 *   Every write of a tenant's archive rows locks this row first, so they are serialised.
 * - `tenant_purges`: the audit entry of every tenant purge (append-only; survives the purge).
 * - Archived rows are tamper-resistant as well as tamper-evident: an update may only chain an
 *   unchained row, and a delete needs the transaction-local setting `nexus.archive_delete`
 *   (set by pruning and purging). The action history's append-only rule gets one exception:
 *   a purge of the tenant named by the transaction-local setting `nexus.erase_tenant`.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("agent_report_events")
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("report_id", "bigint", (c) => c.notNull())
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("correlation_id", "text")
    .addColumn("command_id", "text")
    .addColumn("ask_id", "text")
    .addColumn("causality", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("payload", "text", (c) => c.notNull())
    // payload is JSON.stringify of its own parse and has no report_id: replay may append the
    // report_id to the text instead of re-serialising it (the same bytes; see reportEventJsonFast).
    .addColumn("compact", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("ts", "timestamptz", (c) => c.notNull())
    .addColumn("archived_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("prev_hash", "text")
    .addColumn("hash", "text")
    .addPrimaryKeyConstraint("agent_report_events_pk", ["org_id", "project_id", "report_id"])
    .addCheckConstraint("agent_report_events_chained_ck", sql`(prev_hash is null) = (hash is null)`)
    .execute();
  await db.schema
    .createIndex("agent_report_events_ts_idx")
    .on("agent_report_events")
    .columns(["org_id", "project_id", "ts"])
    .execute();
  // Rows waiting to be chained (another archiver replica inserted them out of order): few, usually none.
  await sql`create index agent_report_events_unchained_idx on agent_report_events (report_id) where hash is null`.execute(
    db,
  );

  await db.schema
    .createTable("agent_report_chains")
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("last_report_id", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("last_hash", "text", (c) => c.notNull().defaultTo("0".repeat(64)))
    .addColumn("complete_after", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("purged_through", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("chained", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("coverage_resets", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("agent_report_chains_pk", ["org_id", "project_id"])
    .execute();

  await db.schema
    .createTable("tenant_purges")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("principal", "text", (c) => c.notNull())
    .addColumn("correlation_id", "text", (c) => c.notNull())
    .addColumn("reports_through", "bigint", (c) => c.notNull())
    .addColumn("chain_report_id", "bigint", (c) => c.notNull())
    .addColumn("chain_hash", "text", (c) => c.notNull())
    .addColumn("counts", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`
    create function tenant_purges_append_only() returns trigger language plpgsql as $$
    begin raise exception 'tenant_purges is append-only'; end $$;
  `.execute(db);
  await sql`
    create trigger tenant_purges_no_update before update or delete on tenant_purges
    for each row execute function tenant_purges_append_only();
  `.execute(db);

  await sql`
    create function agent_report_events_guard() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE' then
        if coalesce(current_setting('nexus.archive_delete', true), '') = 'on' then return old; end if;
        raise exception 'agent_report_events rows are deleted only by pruning or a tenant purge';
      end if;
      if old.hash is null and new.hash is not null
         and (new.org_id, new.project_id, new.report_id, new.type, new.payload, new.ts)
             is not distinct from (old.org_id, old.project_id, old.report_id, old.type, old.payload, old.ts) then
        return new;
      end if;
      raise exception 'agent_report_events rows are immutable once chained';
    end $$;
  `.execute(db);
  await sql`
    create trigger agent_report_events_guard before update or delete on agent_report_events
    for each row execute function agent_report_events_guard();
  `.execute(db);

  // Erasure is the one way history rows of a tenant may go (the purge names the tenant).
  await sql`
    create or replace function action_history_append_only() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE'
         and coalesce(current_setting('nexus.erase_tenant', true), '') = old.org_id || '/' || old.project_id then
        return old;
      end if;
      raise exception 'action_history is append-only';
    end $$;
  `.execute(db);
}

/** Reverts {@link up}. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function action_history_append_only() returns trigger language plpgsql as $$
    begin raise exception 'action_history is append-only'; end $$;
  `.execute(db);
  await db.schema.dropTable("tenant_purges").ifExists().execute();
  await db.schema.dropTable("agent_report_chains").ifExists().execute();
  await db.schema.dropTable("agent_report_events").ifExists().execute();
  await sql`drop function if exists tenant_purges_append_only()`.execute(db);
  await sql`drop function if exists agent_report_events_guard()`.execute(db);
}

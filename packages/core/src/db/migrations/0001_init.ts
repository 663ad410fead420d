import { type Kysely, sql } from "kysely";

/** Initial schema: tenant settings, commands, asks, action history, share outbox, photos. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("tenant_settings")
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("profile", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("persona", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("skin", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("compliance", "jsonb", (c) => c.notNull().defaultTo(sql`'{"risk_overrides":{}}'::jsonb`))
    .addColumn("policy_version", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("settings_version", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("tenant_settings_pk", ["org_id", "project_id"])
    .execute();

  await db.schema
    .createTable("commands")
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("command_id", "text", (c) => c.notNull())
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("body_hash", "text", (c) => c.notNull())
    .addColumn("correlation_id", "text", (c) => c.notNull())
    .addColumn("surface", "text")
    .addColumn("principal", "text", (c) => c.notNull())
    .addColumn("params", "jsonb", (c) => c.notNull())
    .addColumn("context", "jsonb", (c) => c.notNull())
    .addColumn("risk_level", "text", (c) => c.notNull())
    .addColumn("policy_version", "integer", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("accepted_report_id", "text")
    .addColumn("ask_id", "text")
    .addColumn("result", "jsonb")
    .addColumn("error", "jsonb")
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("accepted_at", "timestamptz", (c) => c.notNull())
    .addColumn("started_at", "timestamptz")
    .addColumn("finished_at", "timestamptz")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("commands_pk", ["org_id", "project_id", "command_id"])
    .addCheckConstraint(
      "commands_status_ck",
      sql`status in ('accepted','running','waiting_approval','done','failed','cancelled')`,
    )
    .execute();
  await db.schema
    .createIndex("commands_tenant_updated_idx")
    .on("commands")
    .columns(["org_id", "project_id", "updated_at desc"])
    .execute();

  await db.schema
    .createTable("asks")
    .addColumn("ask_id", "text", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("command_id", "text", (c) => c.notNull())
    .addColumn("correlation_id", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("risk_level", "text", (c) => c.notNull())
    .addColumn("action", "jsonb", (c) => c.notNull())
    .addColumn("action_hash", "text", (c) => c.notNull())
    .addColumn("policy_version", "integer", (c) => c.notNull())
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("decision", "text")
    .addColumn("decided_by", "text")
    .addColumn("decision_note", "text")
    .addColumn("decision_correlation_id", "text")
    .addColumn("decided_at", "timestamptz")
    .addColumn("decided_report_id", "text")
    .addColumn("result", "jsonb")
    .addColumn("error", "jsonb")
    .addColumn("expiry_reported", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("asks_command_uq", ["org_id", "project_id", "command_id"])
    .addCheckConstraint(
      "asks_status_ck",
      sql`status in ('open','decided','executing','done','failed','cancelled','expired')`,
    )
    .addCheckConstraint("asks_decision_ck", sql`decision is null or decision in ('approve','reject')`)
    .execute();
  await db.schema.createIndex("asks_open_expiry_idx").on("asks").columns(["status", "expires_at"]).execute();
  await db.schema
    .createIndex("asks_tenant_updated_idx")
    .on("asks")
    .columns(["org_id", "project_id", "updated_at desc"])
    .execute();

  await db.schema
    .createTable("action_history")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("ask_id", "text", (c) => c.notNull())
    .addColumn("command_id", "text", (c) => c.notNull())
    .addColumn("event", "text", (c) => c.notNull())
    .addColumn("decision", "text")
    .addColumn("executor_id", "text", (c) => c.notNull())
    .addColumn("note", "text")
    .addColumn("correlation_id", "text", (c) => c.notNull())
    .addColumn("details", "jsonb")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      "action_history_event_ck",
      sql`event in ('decided','executed','execution_failed','cancelled','expired')`,
    )
    .execute();
  await db.schema
    .createIndex("action_history_ask_idx")
    .on("action_history")
    .columns(["org_id", "project_id", "ask_id"])
    .execute();
  // Append-only: the history is the backend's record of what happened; rows never change.
  await sql`
    create function action_history_append_only() returns trigger language plpgsql as $$
    begin raise exception 'action_history is append-only'; end $$;
  `.execute(db);
  await sql`
    create trigger action_history_no_update before update or delete on action_history
    for each row execute function action_history_append_only();
  `.execute(db);

  await db.schema
    .createTable("share_outbox")
    .addColumn("share_id", "text", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("ask_id", "text", (c) => c.notNull().unique())
    .addColumn("command_id", "text", (c) => c.notNull())
    .addColumn("recipient", "text", (c) => c.notNull())
    .addColumn("channel", "text", (c) => c.notNull())
    .addColumn("resource", "jsonb", (c) => c.notNull())
    .addColumn("message", "text")
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("last_error", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("delivered_at", "timestamptz")
    .execute();
  await db.schema
    .createIndex("share_outbox_due_idx")
    .on("share_outbox")
    .columns(["status", "next_attempt_at"])
    .execute();

  await db.schema
    .createTable("profile_photos")
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("sha256", "text", (c) => c.notNull())
    .addColumn("content_type", "text", (c) => c.notNull())
    .addColumn("bytes", "bytea", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("profile_photos_pk", ["org_id", "project_id"])
    .execute();
}

/** Drops everything {@link up} created. */
export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["profile_photos", "share_outbox", "action_history", "asks", "commands", "tenant_settings"]) {
    await db.schema.dropTable(t).ifExists().execute();
  }
  await sql`drop function if exists action_history_append_only()`.execute(db);
}

import { type Kysely, sql } from "kysely";

/**
 * The language-model layer's tables (number 0003 is reserved for another change):
 *
 * - `llm_cost_ledger`: one row per model call that used tokens (successful or not: a malformed
 *   answer costs as much as a good one), with tokens in/out and the estimated cost in USD.
 * - `llm_budget_days`: the running total per tenant and UTC day, updated in the same
 *   transaction as the ledger row; `soft_warned_at` is set once, by the call that first crossed
 *   the soft threshold (a conditional update, so exactly one call warns).
 * - `llm_audit`: one row per call attempt (outcome, latency, tokens, cost); prompt and answer
 *   text only when the deployment enables content auditing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("llm_cost_ledger")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("day", "date", (c) => c.notNull())
    .addColumn("command_id", "text", (c) => c.notNull())
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("tokens_in", "integer", (c) => c.notNull())
    .addColumn("tokens_out", "integer", (c) => c.notNull())
    .addColumn("cost_usd", sql`numeric(18,9)`, (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex("llm_cost_ledger_tenant_day_idx")
    .on("llm_cost_ledger")
    .columns(["org_id", "project_id", "day"])
    .execute();

  await db.schema
    .createTable("llm_budget_days")
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("day", "date", (c) => c.notNull())
    .addColumn("spent_usd", sql`numeric(18,9)`, (c) => c.notNull().defaultTo(0))
    .addColumn("calls", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("soft_warned_at", "timestamptz")
    .addPrimaryKeyConstraint("llm_budget_days_pk", ["org_id", "project_id", "day"])
    .execute();

  await db.schema
    .createTable("llm_audit")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("command_id", "text", (c) => c.notNull())
    .addColumn("correlation_id", "text", (c) => c.notNull())
    .addColumn("task", "text", (c) => c.notNull())
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("error_code", "text")
    .addColumn("tokens_in", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("tokens_out", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("cost_usd", sql`numeric(18,9)`, (c) => c.notNull().defaultTo(0))
    .addColumn("latency_ms", "integer", (c) => c.notNull())
    .addColumn("prompt", "jsonb")
    .addColumn("output", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex("llm_audit_tenant_created_idx")
    .on("llm_audit")
    .columns(["org_id", "project_id", "created_at"])
    .execute();
}

/** Reverts {@link up}. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("llm_audit").ifExists().execute();
  await db.schema.dropTable("llm_budget_days").ifExists().execute();
  await db.schema.dropTable("llm_cost_ledger").ifExists().execute();
}

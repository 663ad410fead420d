import { type Kysely, sql } from "kysely";

/**
 * Credentials kept by the back end, hashed at rest:
 * - `api_keys`: keys minted by an admin (`nxk_<id>_<secret>`); only sha256(secret) is stored,
 *   with the principal, roles and the tenants the key covers (`["*"]` = every tenant).
 * - `stream_tickets`: one-use, short-lived tickets for `GET /agent/reports/stream?ticket=`
 *   (EventSource cannot send headers); only sha256(ticket) is stored.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("api_keys")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("secret_hash", "text", (c) => c.notNull())
    .addColumn("principal", "text", (c) => c.notNull())
    .addColumn("roles", "jsonb", (c) => c.notNull())
    .addColumn("tenants", "jsonb", (c) => c.notNull())
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("revoked_at", "timestamptz")
    .execute();
  await db.schema
    .createTable("stream_tickets")
    .addColumn("ticket_hash", "text", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("principal", "text", (c) => c.notNull())
    .addColumn("roles", "jsonb", (c) => c.notNull())
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("credential_expires_at", "timestamptz")
    .addColumn("used_at", "timestamptz")
    .execute();
  await db.schema.createIndex("stream_tickets_expiry_idx").on("stream_tickets").column("expires_at").execute();
}

/** Reverts {@link up}. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("stream_tickets").ifExists().execute();
  await db.schema.dropTable("api_keys").ifExists().execute();
}

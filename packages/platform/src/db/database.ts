import { Kysely, PostgresDialect } from "kysely";
import { type Migration, type MigrationProvider, Migrator } from "kysely/migration";
import pg from "pg";
import * as m0001 from "./migrations/0001_init.ts";
import type { Database } from "./schema.ts";

// bigint (int8) as string: report ids and history ids exceed 2^53 only in theory, but never lose digits.
pg.types.setTypeParser(20, (v) => v);

/** Options of {@link createDb}. */
export interface DbOptions {
  url: string;
  /** Pool size (default 10). */
  max?: number;
  /** `application_name` shown in pg_stat_activity. */
  applicationName?: string;
}

/** A kysely instance over a pg Pool. Call `db.destroy()` to close the pool. */
export function createDb(opts: DbOptions): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    application_name: opts.applicationName,
    connectionTimeoutMillis: 5000,
  });
  // An idle client's error (server restart) must not crash the process; the pool replaces it.
  pool.on("error", () => {});
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Numbered migrations, in order. Add a file `NNNN_name.ts` and list it here. */
const MIGRATIONS: Record<string, Migration> = { "0001_init": m0001 };

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/**
 * Runs every pending migration with kysely's Migrator (which takes a Postgres advisory lock,
 * so concurrent runs are safe).
 * @throws the first migration error.
 */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? [])
    .filter((r: { status: string }) => r.status === "Success")
    .map((r: { migrationName: string }) => r.migrationName);
}

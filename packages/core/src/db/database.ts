import { CompiledQuery, Kysely, PostgresDialect, type Transaction } from "kysely";
import { type Migration, type MigrationProvider, Migrator } from "kysely/migration";
import pg from "pg";
import * as m0001 from "./migrations/0001_init.ts";
import * as m0002 from "./migrations/0002_write_path.ts";
import * as m0003 from "./migrations/0003_auth.ts";
import * as m0004 from "./migrations/0004_llm.ts";
import * as m0005 from "./migrations/0005_archive.ts";
import * as m0006 from "./migrations/0006_requeue.ts";
import * as m0007 from "./migrations/0007_unchained_idx.ts";
import type { Database } from "./schema.ts";

// bigint (int8) as string: report ids and history ids exceed 2^53 only in theory, but never lose digits.
pg.types.setTypeParser(20, (v) => v);

/** Options of {@link createDb}. */
export interface DbOptions {
  url: string;
  /** Pool size: connections this process may hold (default 10). */
  max?: number;
  /** `application_name` shown in pg_stat_activity. */
  applicationName?: string;
  /**
   * How long a query may wait for a pooled connection (or for a new one to connect), ms
   * (default 2000). Past it the query fails with a pool timeout, which callers treat as
   * "Postgres unavailable" instead of waiting behind a stalled database.
   */
  acquireTimeoutMs?: number;
  /**
   * Server-side `statement_timeout`, ms (default 5000; 0 = none). The client also gives up
   * after this plus one second (`query_timeout`), so a database that stopped answering
   * altogether (SIGSTOP, a dead network) cannot hang a request.
   */
  statementTimeoutMs?: number;
  /** Called with errors of connections, idle or checked out, instead of crashing the process. */
  onError?: (err: Error) => void;
  /** Called after every query with its duration (seconds) and the error, if it failed (for metrics). */
  onQuery?: (seconds: number, err: unknown) => void;
}

/** A kysely instance over a pg Pool. Call `db.destroy()` to close the pool. */
export function createDb(opts: DbOptions): Kysely<Database> {
  const statementTimeout = opts.statementTimeoutMs ?? 5000;
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    application_name: opts.applicationName,
    connectionTimeoutMillis: opts.acquireTimeoutMs ?? 2000,
    ...(statementTimeout > 0 ? { statement_timeout: statementTimeout, query_timeout: statementTimeout + 1000 } : {}),
  });
  const onError = opts.onError ?? (() => {});
  // pg-pool listens for errors on idle clients only; a checked-out client that loses its
  // connection emits 'error' with no listener and crashes the process. Every client gets a
  // listener for its whole life; the failed query itself rejects and is handled by its caller.
  pool.on("connect", (client) => {
    client.on("error", onError);
  });
  pool.on("error", onError);
  const onQuery = opts.onQuery;
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    ...(onQuery
      ? {
          log: (e) => onQuery(e.queryDurationMillis / 1000, e.level === "error" ? e.error : undefined),
        }
      : {}),
  });
  pools.set(db, { pool, ...(onQuery ? { onQuery } : {}) });
  return db;
}

const pools = new WeakMap<object, { pool: pg.Pool; onQuery?: (seconds: number, err: unknown) => void }>();

/** Connections of the pool behind `db`: open, idle, and queries waiting for one. */
export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/** The pool counts of a {@link createDb} instance (`undefined` for a transaction or another Kysely). */
export function poolStats(db: Kysely<Database>): PoolStats | undefined {
  const p = pools.get(db)?.pool;
  return p ? { total: p.totalCount, idle: p.idleCount, waiting: p.waitingCount } : undefined;
}

/**
 * Runs a named prepared statement (node-postgres: the server parses and plans `text` once per
 * connection, then only binds and executes it) on the pool behind `db`. Used for the few
 * statements every command runs; inside a transaction (no pool of its own) it runs the same
 * text unprepared on the transaction's connection.
 * @returns the rows, parsed with the pool's type parsers (jsonb → objects, timestamptz → Date,
 *   int8 → string), like kysely's.
 */
export async function preparedQuery<R>(
  db: Kysely<Database> | Transaction<Database>,
  name: string,
  text: string,
  values: unknown[],
): Promise<R[]> {
  const entry = pools.get(db);
  if (!entry) return (await db.executeQuery<R>(CompiledQuery.raw(text, values))).rows;
  const started = performance.now();
  try {
    const rows = (await entry.pool.query<R & pg.QueryResultRow>({ name, text, values })).rows;
    entry.onQuery?.((performance.now() - started) / 1000, undefined);
    return rows;
  } catch (err) {
    entry.onQuery?.((performance.now() - started) / 1000, err);
    throw err;
  }
}

/** Numbered migrations, in order. Add a file `NNNN_name.ts` and list it here. */
const MIGRATIONS: Record<string, Migration> = {
  "0001_init": m0001,
  "0002_write_path": m0002,
  "0003_auth": m0003,
  "0004_llm": m0004,
  "0005_archive": m0005,
  "0006_requeue": m0006,
  "0007_unchained_idx": m0007,
};

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

/**
 * The migrations this code knows that the database has not run yet (read-only: nothing is
 * created). Empty when the schema is current.
 */
export async function pendingMigrations(db: Kysely<Database>): Promise<string[]> {
  const all = await new Migrator({ db, provider }).getMigrations();
  return all.filter((m) => !m.executedAt).map((m) => m.name);
}

import type { Tenant } from "@nexus/contracts";
import { archiveAfter, archiveCovers, chainHead, type Database, type StoredReport } from "@nexus/core";
import type { ReportLog } from "@nexus/messaging";
import type { Kysely } from "kysely";

function firstString(v: unknown): string | undefined {
  if (Array.isArray(v)) return typeof v[0] === "string" ? v[0] : undefined;
  return typeof v === "string" ? v : undefined;
}

/**
 * Picks the raw cursor of a request: the `Last-Event-ID` header wins over `?cursor=` because a
 * browser `EventSource` re-sends its original URL (with the original `cursor`) on every
 * reconnect, while the header carries the newest id it saw (docs/contract.md, LOCKED). An empty
 * value counts as absent (EventSource never sends an empty Last-Event-ID).
 *
 * @param header the `last-event-id` request header as Node parsed it.
 * @param query the `cursor` query parameter as Fastify parsed it (string, array or absent).
 * @returns the raw cursor text, not yet parsed (see `parseCursor` in contracts), or
 *   `undefined` when the request has none.
 */
export function pickCursor(header: string | string[] | undefined, query: unknown): string | undefined {
  const h = firstString(header);
  if (h !== undefined && h !== "") return h;
  const q = firstString(query);
  if (q !== undefined && q !== "") return q;
  return undefined;
}

export { jetStreamReportLog, type ReportLog } from "@nexus/messaging";

/**
 * The reads of the Postgres archive (`agent_report_events`, docs/archive.md) that cursor
 * handling and replay need; the narrow interface over `@nexus/core`'s archive reads.
 */
export interface ArchiveLog {
  /**
   * The archive half of the cursor validity rule (see {@link cursorSource}): replaying every
   * report of the tenant after `cursor` from the archive is complete. In short: the archive
   * holds the cursor's own report (of this tenant, chained, not erased, younger than
   * `ARCHIVE_KEEP_DAYS`) and is complete from it on (`archiveCovers` in `@nexus/core`).
   * @throws pg / kysely errors when Postgres does not answer.
   */
  covers(tenant: Tenant, cursor: number): Promise<boolean>;
  /**
   * The tenant's archived reports after `pos`, oldest first, at most `limit`, read together
   * with the proof that they are all of them up to the last one returned (`archiveAfter`).
   * @returns `null` when that proof fails (pruned, purged, or coverage restarted since).
   * @throws pg / kysely errors when Postgres does not answer.
   */
  after(tenant: Tenant, pos: number, limit: number): Promise<StoredReport[] | null>;
  /**
   * The newest report_id the archive holds for the tenant (its chain head), 0 when none: how
   * far the archiver has come. A cursor above it may still become archived.
   * @throws pg / kysely errors when Postgres does not answer.
   */
  head(tenant: Tenant): Promise<number>;
}

/** An {@link ArchiveLog} over the archive tables. */
export function postgresArchiveLog(db: Kysely<Database>, o: { keepDays: number; now: () => Date }): ArchiveLog {
  return {
    covers: (tenant, cursor) => archiveCovers(db, tenant, cursor, { keepDays: o.keepDays, now: o.now() }),
    after: (tenant, pos, limit) => archiveAfter(db, tenant, pos, limit),
    head: async (tenant) => (await chainHead(db, tenant))?.last_report_id ?? 0,
  };
}

/** Where a valid cursor is replayed from. */
export type CursorSource = "jetstream" | "archive";

/**
 * The cursor validity rule, stated once. A cursor `c` (a report_id; 0 = "from the
 * beginning") is valid — the server replays every report of the tenant with report_id > c, in
 * order, with no gap and no duplicate — iff one of:
 *
 * 1. JetStream covers it (`ReportLog.covers`): c's own message is still retained on the
 *    tenant's subject (c == 0: the tenant never lost a report to retention). Retention drops a
 *    subject's oldest first, so every later report is retained too. Replayed from JetStream.
 * 2. The archive covers it (`ArchiveLog.covers`): the archive holds c's own report as a
 *    chained row of this tenant, not erased by a purge, not older than `ARCHIVE_KEEP_DAYS`, at
 *    or after the point from which the archive is complete (c == 0: the archive holds the
 *    tenant's first report and nothing was pruned or purged). The archive holds every later
 *    report up to its chain head (invariant (C) of `@nexus/core` archive/append.ts; pruning
 *    and purging delete prefixes only). Replayed from the archive, then handed over to
 *    JetStream once JetStream covers the replay's position (replay.ts).
 *
 * Anything else is invalid and answered with `CURSOR_EXPIRED` and a snapshot: a cursor older
 * than both retentions, beyond the newest report (the stream was reset), not a report_id of
 * this tenant (another tenant's: indistinguishable from a missing one, so it leaks nothing),
 * or not a valid id at all (`parseCursor` refuses it before this rule is asked).
 *
 * Both halves are monotonic — JetStream retention and archive pruning only ever remove
 * reports, oldest first — so a `true` answer at time T also held at every earlier moment;
 * replays re-check the same rule at their current position after each read, which proves
 * after the fact that nothing they sent skipped a report.
 *
 * @param archive absent when the service runs without an archive (rule 1 only).
 * @returns the source to replay from, or `null` when the cursor is invalid.
 * @throws nats.js or pg errors when a needed store does not answer.
 */
export async function cursorSource(
  log: ReportLog,
  archive: ArchiveLog | undefined,
  tenant: Tenant,
  cursor: number,
): Promise<CursorSource | null> {
  if (await log.covers(tenant, cursor)) return "jetstream";
  if (archive && (await archive.covers(tenant, cursor))) return "archive";
  return null;
}

/** Options of {@link awaitCursorSource}. */
export interface CursorWaitOptions {
  /** Longest wait for the archiver, ms (`ARCHIVE_WAIT_MS`); 0: do not wait. */
  waitMs: number;
  /** How often the archive's head is read while waiting, ms. */
  pollMs: number;
  /** Stops the wait early (the client went away). */
  closed: () => boolean;
}

/**
 * {@link cursorSource}, waiting for the archiver where it is the only reason a cursor is
 * invalid. A cursor that JetStream no longer holds but that is at or below the tenant's newest
 * report and above the archive's head (cursor 0: the archive holds nothing of the tenant yet)
 * has simply not been archived *yet*: the archiver runs behind the stream (it takes its
 * reports in batches), so a client that fell more than `STREAM_EVENT_KEEP` behind and resumed
 * at once would otherwise get `CURSOR_EXPIRED` and a snapshot for a cursor that becomes valid
 * milliseconds later. Such a cursor waits, up to
 * `waitMs`, until the archive's head reaches it, and the rule is then asked again — the same
 * wait, and the same `ARCHIVE_WAIT_MS`, as a replay that gets ahead of the archiver
 * (replay.ts). Every other invalid cursor is answered at once; another tenant's id in that
 * range waits like a valid one (until the head passes it) and then expires alike, so the wait
 * tells nothing about other tenants.
 * @returns as {@link cursorSource}; `null` also when `closed()` turned true meanwhile.
 * @throws nats.js or pg errors when a needed store does not answer.
 */
export async function awaitCursorSource(
  log: ReportLog,
  archive: ArchiveLog | undefined,
  tenant: Tenant,
  cursor: number,
  o: CursorWaitOptions,
): Promise<CursorSource | null> {
  const found = await cursorSource(log, archive, tenant, cursor);
  if (found !== null || !archive || o.waitMs <= 0) return found;
  const newest = await log.lastSeq(tenant);
  if (cursor > newest || newest === 0) return null;
  // Cursor 0 ("from the beginning") needs the tenant's first report archived: wait while the
  // archive holds nothing of the tenant; any other cursor, while the head is below it.
  const isBehind = (head: number) => (cursor === 0 ? head === 0 : head < cursor);
  const deadline = Date.now() + o.waitMs;
  let behind = isBehind(await archive.head(tenant));
  if (!behind) return null;
  while (behind && !o.closed() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, o.pollMs));
    behind = isBehind(await archive.head(tenant));
  }
  if (behind || o.closed()) return null;
  return cursorSource(log, archive, tenant, cursor);
}

/**
 * Reading the archive: the archive half of the cursor validity rule, the batched reads of a
 * replay, the history page and the audit export. Every read sees chained rows only
 * (`report_id <= last_report_id`) above the tenant's purge mark, so it never shows a report
 * the chain does not hold yet, nor one that was erased.
 */
import type { Tenant } from "@nexus/contracts";
import { type Kysely, sql } from "kysely";
import type { Database } from "../db/schema.ts";

/** One archived report as stored. */
export interface StoredReport {
  /** Its report_id (the JetStream sequence). */
  seq: number;
  /** The ReportMessage JSON exactly as published. */
  payload: string;
  /** The payload is compact (`isCompactReport` of contracts): `reportEventJsonFast` applies. */
  compact?: boolean;
}

const DAY_MS = 86_400_000;

/**
 * The archive half of the cursor validity rule (services/stream/src/cursor.ts states the whole
 * rule): replaying "every report of the tenant with report_id > `cursor`" from the archive is
 * complete iff
 * - `cursor > 0`: the archive holds the cursor's own report as a chained row of this tenant,
 *   above the tenant's purge mark, at or after `complete_after`, and not older than
 *   `keepDays` (`ARCHIVE_KEEP_DAYS`) by its `ts`. By invariant (C) of append.ts the archive
 *   then holds every later report of the tenant up to its chain head; pruning and purging
 *   remove a prefix only, so that stays true while the cursor's row exists. Another tenant's
 *   id, an id beyond the newest report, a pruned or erased one: all answer false, alike.
 * - `cursor == 0`: the archive holds the tenant's first report and nothing was pruned or
 *   purged (`complete_after == 0`, `purged_through == 0`), and its oldest row is within
 *   `keepDays`.
 * @throws pg / kysely errors when Postgres does not answer.
 */
export async function archiveCovers(
  db: Kysely<Database>,
  tenant: Tenant,
  cursor: number,
  o: { keepDays: number; now: Date },
): Promise<boolean> {
  const cutoff = new Date(o.now.getTime() - o.keepDays * DAY_MS);
  if (cursor === 0) {
    const r = await sql<{ ok: boolean }>`
      select (h.complete_after = 0 and h.purged_through = 0 and h.last_report_id > 0
              and (select min(ts) from agent_report_events e
                   where e.org_id = h.org_id and e.project_id = h.project_id and e.report_id <= h.last_report_id) >= ${cutoff}) as ok
      from agent_report_chains h
      where h.org_id = ${tenant.org_id} and h.project_id = ${tenant.project_id}`.execute(db);
    return r.rows[0]?.ok === true;
  }
  const r = await sql<{ ok: boolean }>`
    select true as ok
    from agent_report_chains h
    join agent_report_events e on e.org_id = h.org_id and e.project_id = h.project_id
    where h.org_id = ${tenant.org_id} and h.project_id = ${tenant.project_id}
      and e.report_id = ${cursor}
      and e.report_id <= h.last_report_id and e.report_id > h.purged_through and e.report_id >= h.complete_after
      and e.ts >= ${cutoff}`.execute(db);
  return r.rows.length > 0;
}

/**
 * The next reports of a replay from the archive: the tenant's chained reports with
 * `report_id > pos`, oldest first, at most `limit` — read in one statement together with its
 * proof that they are *all* the tenant's reports after `pos` up to the last one returned:
 * `pos`'s own row is still there (or `pos == 0` and nothing was ever pruned or purged) and
 * `pos >= complete_after`, in the same snapshot (see {@link archiveCovers}).
 * @returns the reports (empty when the archive holds nothing after `pos` yet), or `null` when
 *   the proof fails (pruned, purged, or coverage restarted since the cursor was checked).
 * @throws pg / kysely errors when Postgres does not answer.
 */
export async function archiveAfter(
  db: Kysely<Database>,
  tenant: Tenant,
  pos: number,
  limit: number,
): Promise<StoredReport[] | null> {
  // The head row is read once (a materialised CTE), then one index range scan of the tenant's rows.
  const r = await sql<{ report_id: string; payload: string; compact: boolean }>`
    with h as materialized (
      select last_report_id, purged_through from agent_report_chains
      where org_id = ${tenant.org_id} and project_id = ${tenant.project_id}
        and (${pos}::bigint = 0 and complete_after = 0 and purged_through = 0
             or ${pos}::bigint > 0 and ${pos}::bigint >= complete_after and ${pos}::bigint > purged_through)
    )
    select e.report_id, e.payload, e.compact
    from h, agent_report_events e
    where e.org_id = ${tenant.org_id} and e.project_id = ${tenant.project_id}
      and e.report_id >= ${pos} and e.report_id <= h.last_report_id and e.report_id > h.purged_through
    order by e.report_id
    limit ${limit + 1}`.execute(db);
  const rows = r.rows.map((x) => ({ seq: Number(x.report_id), payload: x.payload, compact: x.compact }));
  if (pos === 0) {
    if (rows.length === 0) {
      // Either nothing archived yet (fine) or the proof failed: tell them apart.
      const h = await sql<{ ok: boolean }>`
        select (complete_after = 0 and purged_through = 0) as ok from agent_report_chains
        where org_id = ${tenant.org_id} and project_id = ${tenant.project_id}`.execute(db);
      return h.rows[0]?.ok === false ? null : [];
    }
    return rows.slice(0, limit);
  }
  if (rows[0]?.seq !== pos) return null;
  return rows.slice(1);
}

/** The tenant's archived reports before `before` (all when absent), newest first, at most `limit`, plus whether older ones exist. */
export async function historyPage(
  db: Kysely<Database>,
  tenant: Tenant,
  o: { before?: number; limit: number },
): Promise<{ reports: StoredReport[]; more: boolean }> {
  const r = await sql<{ report_id: string; payload: string }>`
    select e.report_id, e.payload
    from agent_report_chains h
    join agent_report_events e on e.org_id = h.org_id and e.project_id = h.project_id
    where h.org_id = ${tenant.org_id} and h.project_id = ${tenant.project_id}
      and e.report_id <= h.last_report_id and e.report_id > h.purged_through
      ${o.before !== undefined ? sql`and e.report_id < ${o.before}` : sql``}
    order by e.report_id desc
    limit ${o.limit + 1}`.execute(db);
  const rows = r.rows.map((x) => ({ seq: Number(x.report_id), payload: x.payload }));
  return { reports: rows.slice(0, o.limit), more: rows.length > o.limit };
}

/** One chained row as the audit export writes it. */
export interface ChainedRow extends StoredReport {
  ts: Date;
  type: string;
  prev_hash: string;
  hash: string;
}

/**
 * The tenant's chained reports for an audit export: the contiguous report_id range from the
 * first report with `ts >= from` to the last with `ts < to`, oldest first, read in keyset
 * pages of `pageSize`. A contiguous range, not a `ts` filter: report timestamps come from
 * several writers' clocks and need not increase with report_id, and a chain segment with a
 * row left out would not verify.
 * @throws pg / kysely errors when Postgres does not answer (mid-way: the export ends early).
 */
export async function* exportChain(
  db: Kysely<Database>,
  tenant: Tenant,
  o: { from: Date; to: Date; pageSize?: number },
): AsyncGenerator<ChainedRow> {
  const range = await sql<{ lo: string | null; hi: string | null }>`
    select
      (select min(e.report_id) from agent_report_events e
        where e.org_id = h.org_id and e.project_id = h.project_id and e.ts >= ${o.from}
          and e.report_id <= h.last_report_id and e.report_id > h.purged_through) as lo,
      (select max(e.report_id) from agent_report_events e
        where e.org_id = h.org_id and e.project_id = h.project_id and e.ts < ${o.to}
          and e.report_id <= h.last_report_id and e.report_id > h.purged_through) as hi
    from agent_report_chains h
    where h.org_id = ${tenant.org_id} and h.project_id = ${tenant.project_id}`.execute(db);
  const lo = range.rows[0]?.lo;
  const hi = range.rows[0]?.hi;
  if (lo == null || hi == null || Number(lo) > Number(hi)) return;
  const pageSize = o.pageSize ?? 1000;
  let pos = Number(lo) - 1;
  for (;;) {
    const page = await sql<{
      report_id: string;
      payload: string;
      ts: Date;
      type: string;
      prev_hash: string;
      hash: string;
    }>`
      select e.report_id, e.payload, e.ts, e.type, e.prev_hash, e.hash
      from agent_report_chains h
      join agent_report_events e on e.org_id = h.org_id and e.project_id = h.project_id
      where h.org_id = ${tenant.org_id} and h.project_id = ${tenant.project_id}
        and e.report_id > ${pos} and e.report_id <= ${hi}
        and e.report_id <= h.last_report_id and e.report_id > h.purged_through
      order by e.report_id
      limit ${pageSize}`.execute(db);
    for (const x of page.rows) {
      pos = Number(x.report_id);
      yield { seq: pos, payload: x.payload, ts: x.ts, type: x.type, prev_hash: x.prev_hash, hash: x.hash };
    }
    if (page.rows.length < pageSize) return;
  }
}

/** The archive's chain head of a tenant, or undefined when nothing of it was ever archived. */
export async function chainHead(
  db: Kysely<Database>,
  tenant: Tenant,
): Promise<
  | {
      last_report_id: number;
      last_hash: string;
      complete_after: number;
      purged_through: number;
      chained: number;
      coverage_resets: number;
    }
  | undefined
> {
  const r = await db
    .selectFrom("agent_report_chains")
    .selectAll()
    .where("org_id", "=", tenant.org_id)
    .where("project_id", "=", tenant.project_id)
    .executeTakeFirst();
  if (!r) return undefined;
  return {
    last_report_id: Number(r.last_report_id),
    last_hash: r.last_hash,
    complete_after: Number(r.complete_after),
    purged_through: Number(r.purged_through),
    chained: Number(r.chained),
    coverage_resets: r.coverage_resets,
  };
}

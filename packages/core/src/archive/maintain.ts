/**
 * Keeping the archive: retention pruning (`ARCHIVE_KEEP_DAYS`) and the tenant purge (erasure).
 * Both delete a prefix of a tenant's rows in report_id order only, which is what keeps the
 * cursor validity rule of read.ts true: while a cursor's own row exists, every later report of
 * its tenant up to the chain head does too.
 */
import { type AgentReport, subjects, type Tenant } from "@nexus/contracts";
import { type Kysely, sql, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { type Outcome, type PendingReport, reportMessageJson } from "../effects.ts";
import { reportMsgId } from "../ids.ts";
import { insertOutbox } from "../outbox.ts";

const DAY_MS = 86_400_000;

async function allowArchiveDelete(trx: Transaction<Database>): Promise<void> {
  await sql`select set_config('nexus.archive_delete', 'on', true)`.execute(trx);
}

/** Options of {@link pruneArchive}. */
export interface PruneOptions {
  /** `ARCHIVE_KEEP_DAYS`: rows whose report is older than this many days go. */
  keepDays: number;
  now: Date;
  /** Rows deleted per transaction (default 5000), so no transaction holds many locks for long. */
  batchSize?: number;
  /** Stop early (shutdown). */
  signal?: AbortSignal;
}

/**
 * Retention: per tenant, deletes the chained rows *before* its first row whose report is
 * younger than `keepDays` (all chained rows when none is), oldest first, in batches of
 * `batchSize`, each batch in its own transaction that also raises the tenant's
 * `complete_after` past what it deleted. Rows erased by a purge (at or below
 * `purged_through`) whose deletion was interrupted go too. A report with an old `ts` behind a
 * younger one stays until the younger one is due: the deleted part is always a prefix.
 * @returns rows deleted.
 * @throws pg / kysely errors (the next run continues where this one stopped).
 */
export async function pruneArchive(db: Kysely<Database>, o: PruneOptions): Promise<number> {
  const cutoff = new Date(o.now.getTime() - o.keepDays * DAY_MS);
  const batch = o.batchSize ?? 5000;
  let deleted = 0;
  let after = { org_id: "", project_id: "" };
  for (;;) {
    const tenants = await db
      .selectFrom("agent_report_chains")
      .select(["org_id", "project_id", "last_report_id", "purged_through"])
      .where((eb) =>
        eb.or([
          eb("org_id", ">", after.org_id),
          eb.and([eb("org_id", "=", after.org_id), eb("project_id", ">", after.project_id)]),
        ]),
      )
      .orderBy("org_id")
      .orderBy("project_id")
      .limit(500)
      .execute();
    if (tenants.length === 0) return deleted;
    for (const t of tenants) {
      if (o.signal?.aborted) return deleted;
      after = { org_id: t.org_id, project_id: t.project_id };
      const young = await sql<{ first: string | null }>`
        select min(report_id) as first from agent_report_events
        where org_id = ${t.org_id} and project_id = ${t.project_id} and ts >= ${cutoff}
          and report_id <= ${t.last_report_id}`.execute(db);
      const keepFrom = young.rows[0]?.first != null ? Number(young.rows[0].first) : Number(t.last_report_id) + 1;
      for (;;) {
        if (o.signal?.aborted) return deleted;
        const n = await db.transaction().execute(async (trx) => {
          await allowArchiveDelete(trx);
          const gone = await sql<{ top: string | null; n: string }>`
            with victims as (
              select report_id from agent_report_events
              where org_id = ${t.org_id} and project_id = ${t.project_id}
                and (report_id < ${keepFrom} and hash is not null or report_id <= ${t.purged_through})
              order by report_id limit ${batch}
            ), d as (
              delete from agent_report_events e using victims v
              where e.org_id = ${t.org_id} and e.project_id = ${t.project_id} and e.report_id = v.report_id
              returning e.report_id
            )
            select max(report_id) as top, count(*) as n from d`.execute(trx);
          const top = gone.rows[0]?.top;
          if (top != null)
            await sql`
              update agent_report_chains set complete_after = greatest(complete_after, ${top}::bigint), updated_at = now()
              where org_id = ${t.org_id} and project_id = ${t.project_id}`.execute(trx);
          return Number(gone.rows[0]?.n ?? 0);
        });
        deleted += n;
        if (n < batch) break;
      }
    }
  }
}

/** Arguments of {@link purgeTenant}. */
export interface PurgeArgs {
  tenant: Tenant;
  /** W: the tenant's newest report_id in JetStream, read before (everything up to it is erased). */
  reportsThrough: number;
  /** Who asked (recorded in the audit entry and the report). */
  principal: string;
  correlationId: string;
  now: Date;
  /** Archive rows deleted per transaction after the first (default 5000). */
  batchSize?: number;
  /** How long the outbox relay leaves the report to the caller, ms (default 60000: time to purge JetStream first). */
  reportGraceMs?: number;
}

/** The audit entry of a purge, and what it deleted. */
export interface PurgeRow {
  /** `tenant_purges.id`. */
  id: string;
  /** Rows deleted per table (`agent_report_events` counted before its batched deletion). */
  counts: Record<string, number>;
  /** The chain head when the purge took effect: the next archived report links to it. */
  chain: { report_id: number; hash: string };
  /** The `report_outbox` row of the `tenant.purged` report: delete it once published. */
  outboxId: string;
  /**
   * False when deleting the archive rows failed part-way (Postgres went away): they are
   * invisible to every read already and retention pruning deletes them on its next run.
   */
  archiveDeleted: boolean;
}

/** Tables of a tenant the purge empties in its first transaction, in this order. */
const TENANT_TABLES = [
  "share_outbox",
  "report_outbox",
  "action_history",
  "asks",
  "commands",
  "profile_photos",
  "tenant_settings",
] as const;

/**
 * Erases a tenant's data in Postgres (docs/archive.md "Purge"), the database part of
 * `DELETE /admin/tenants/{org_id}/{project_id}`:
 * 1. one transaction: lock the tenant's chain head, set `purged_through` (and
 *    `complete_after`) to W — from then on no read shows an archived report at or below W and
 *    the archiver drops any that still arrive —, delete the tenant's commands, asks, action
 *    history, settings, photo and outboxes, append the audit entry (`tenant_purges`, which is
 *    never purged) with the counts and the chain head, and store the `tenant.purged` report in
 *    the report outbox (leased for `reportGraceMs`, so the gateway's relay publishes it if the
 *    caller never does: the usual commit → publish → re-publish-orphans loop);
 * 2. delete the tenant's archive rows at or below W in batches (each its own transaction; if
 *    interrupted, retention pruning finishes it).
 * Returns the `tenant.purged` report to publish after the caller has purged JetStream.
 * Idempotent: purging again erases whatever appeared since (W only grows).
 * @throws pg / kysely errors: nothing of step 1 happened if it fails there.
 */
export async function purgeTenant(db: Kysely<Database>, a: PurgeArgs): Promise<Outcome<PurgeRow>> {
  const t = a.tenant;
  const key = `${t.org_id}/${t.project_id}`;
  const first = await db.transaction().execute(async (trx) => {
    await sql`
      insert into agent_report_chains (org_id, project_id) values (${t.org_id}, ${t.project_id})
      on conflict do nothing`.execute(trx);
    const head = await trx
      .selectFrom("agent_report_chains")
      .select(["last_report_id", "last_hash", "purged_through"])
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const through = Math.max(a.reportsThrough, Number(head.purged_through));
    await sql`
      update agent_report_chains
      set purged_through = ${through}, complete_after = greatest(complete_after, ${through}::bigint), updated_at = ${a.now}
      where org_id = ${t.org_id} and project_id = ${t.project_id}`.execute(trx);
    await sql`select set_config('nexus.erase_tenant', ${key}, true)`.execute(trx);
    const counts: Record<string, number> = {};
    for (const table of TENANT_TABLES) {
      const r = await trx
        .deleteFrom(table)
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .executeTakeFirst();
      counts[table] = Number(r.numDeletedRows);
    }
    const archived = await sql<{ n: string }>`
      select count(*) as n from agent_report_events
      where org_id = ${t.org_id} and project_id = ${t.project_id} and report_id <= ${through}`.execute(trx);
    counts.agent_report_events = Number(archived.rows[0]?.n ?? 0);
    const entry = await trx
      .insertInto("tenant_purges")
      .values({
        org_id: t.org_id,
        project_id: t.project_id,
        principal: a.principal,
        correlation_id: a.correlationId,
        reports_through: through,
        chain_report_id: head.last_report_id,
        chain_hash: head.last_hash,
        counts: JSON.stringify(counts),
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    const pending = purgedReport(t, through, counts, a);
    const outboxId = await insertOutbox(trx, {
      tenant: t,
      msgId: pending.msgId,
      subject: subjects.report(t),
      payload: reportMessageJson(pending),
      correlationId: a.correlationId,
      now: a.now,
      graceMs: a.reportGraceMs ?? 60_000,
    });
    return {
      id: entry.id,
      through,
      counts,
      pending,
      outboxId,
      chain: { report_id: Number(head.last_report_id), hash: head.last_hash },
    };
  });
  const batch = a.batchSize ?? 5000;
  let archiveDeleted = true;
  for (;;) {
    const n = await db
      .transaction()
      .execute(async (trx) => {
        await allowArchiveDelete(trx);
        const r = await sql`
        delete from agent_report_events e
        where (e.org_id, e.project_id, e.report_id) in (
          select org_id, project_id, report_id from agent_report_events
          where org_id = ${t.org_id} and project_id = ${t.project_id} and report_id <= ${first.through}
          order by report_id limit ${batch})`.execute(trx);
        return Number(r.numAffectedRows ?? 0);
      })
      // The rows are invisible already (purged_through); retention pruning deletes what is left.
      .catch(() => -1);
    if (n < 0) archiveDeleted = false;
    if (n < batch) break;
  }
  return {
    row: { id: first.id, counts: first.counts, chain: first.chain, outboxId: first.outboxId, archiveDeleted },
    effects: { reports: [first.pending], notifications: [], messages: [] },
  };
}

/** The `tenant.purged` report of a purge through `through` (its msg id names W, so a repeat is stored once). */
function purgedReport(t: Tenant, through: number, counts: Record<string, number>, a: PurgeArgs): PendingReport {
  const report: AgentReport = {
    type: "tenant.purged",
    status: "done",
    title: "Tenant data erased",
    summary: `Every report up to ${through}, and the tenant's commands, asks, history and settings, were erased by ${a.principal}.`,
    purge: { reports_through: String(through), purged_by: a.principal, counts },
  };
  return {
    tenant: t,
    msgId: reportMsgId(t, "tenant", `purged.${through}`),
    report,
    causality: { correlation_id: a.correlationId },
    ts: a.now.toISOString(),
  };
}

/**
 * Appending to the archive: the archiver's one state transition. Every report of
 * NEXUS_REPORTS is stored once (primary key (org_id, project_id, report_id)) and chained per
 * tenant in report_id order, whatever order and however often the reports arrive and however
 * many archivers run (docs/archive.md "The archiver").
 *
 * Terms:
 * - head: the tenant's `agent_report_chains` row — `last_report_id` / `last_hash` of the newest
 *   chained row. Every write to a tenant's archive rows first locks its head (`FOR UPDATE`), so
 *   writers of one tenant are serialised, and the chain is extended by one writer at a time.
 * - chained row: a row with `hash`. Invariant (C): for every tenant, the chained rows are
 *   exactly the tenant's reports with `complete_after < report_id <= last_report_id` (less a
 *   pruned or purged prefix), each with `prev_hash` = the hash of the chained row before it.
 * - chain bound B (`chainThrough`): a stream sequence such that every report with
 *   `report_id <= B` is either already stored (chained or not) or in the batch at hand. The
 *   archiver derives it from its durable consumer (acknowledged ⇒ committed) and its batch.
 *
 * Why (C) holds: a report at or below B is appended only after every report of its tenant
 * below it — they are stored or in hand by the definition of B, and merged in report_id order
 * under the head lock; a report above B is stored unchained and waits for a later bound.
 * Reports lost before anyone received them (JetStream retention overtook the archiver) cannot
 * be in hand: the caller proves there were none with the cursor validity rule after reading
 * its batch (`proofs`), and without that proof the tenant's `complete_after` moves up to just
 * before the appended reports, so the archive never claims a range it may not hold.
 */
import { type Tenant, tenantFromSubject } from "@nexus/contracts";
import { sql, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { chainHash } from "./chain.ts";

/** A report ready to be archived (see {@link parseArchivable}). */
export interface ArchivableReport {
  tenant: Tenant;
  /** The JetStream sequence. */
  reportId: number;
  /** The message as published (UTF-8 decoded). */
  payload: string;
  /** `JSON.parse(payload)`: a JSON object naming `tenant`. */
  message: Record<string, unknown>;
}

/** A message of NEXUS_REPORTS that is not archived, and why. */
export interface RefusedReport {
  reportId: number;
  reason: string;
}

const decoder = new TextDecoder();

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Decides whether a message of NEXUS_REPORTS is archived: exactly the messages the stream
 * service would show (`reportEventJson`): a JSON object on `nexus.report.<org>.<project>`
 * whose `tenant` names that tenant. Anything else is refused (a buggy or forged publish; it is
 * never shown on any stream either). Deterministic, so every archiver decides alike.
 */
export function parseArchivable(
  subject: string,
  seq: number,
  data: Uint8Array | string,
): ArchivableReport | RefusedReport {
  const tenant = tenantFromSubject(subject);
  if (!tenant || subject.split(".").length !== 4 || !subject.startsWith("nexus.report."))
    return { reportId: seq, reason: "not a tenant report subject" };
  const payload = typeof data === "string" ? data : decoder.decode(data);
  let message: unknown;
  try {
    message = JSON.parse(payload);
  } catch {
    return { reportId: seq, reason: "not JSON" };
  }
  if (!isObject(message) || !isObject(message.tenant)) return { reportId: seq, reason: "not a report object" };
  if (message.tenant.org_id !== tenant.org_id || message.tenant.project_id !== tenant.project_id)
    return { reportId: seq, reason: "names another tenant than its subject" };
  return { tenant, reportId: seq, payload, message };
}

/** True for a refused message. */
export function isRefused(r: ArchivableReport | RefusedReport): r is RefusedReport {
  return "reason" in r;
}

/** `org/project`: the key of a tenant in maps. */
export function tenantKey(t: Tenant): string {
  return `${t.org_id}/${t.project_id}`;
}

/** Arguments of {@link appendReports}. */
export interface AppendArgs {
  /** Reports to archive: any tenants, any order, duplicates and already archived ones allowed. */
  reports: ArchivableReport[];
  /** The chain bound B (see module doc); 0 stores everything unchained. */
  chainThrough: number;
  /** More tenants whose stored, unchained rows at or below B should be chained now. */
  alsoChain?: Tenant[];
  /**
   * Per tenant key, the head `h` for which the caller proved, *after* it read its batch and B,
   * that JetStream lost no report of the tenant after `h` (the cursor validity rule
   * `covers(tenant, h)`; `h = 0`: the tenant never lost a report). A proof for `h` also holds
   * for any later head. Tenants without a proof get their coverage restarted when appended to.
   */
  proofs: ReadonlyMap<string, number>;
  /** The clock, for rows whose report carries no parsable `ts`. */
  now: Date;
}

/** What {@link appendReports} did. */
export interface AppendResult {
  /** Rows inserted (chained or not). */
  inserted: number;
  /** Rows chained (inserted chained, or chained after waiting). */
  chained: number;
  /** Reports already archived, or erased by a purge: nothing done. */
  skipped: number;
  /** Rows stored unchained (above the bound). */
  deferred: number;
  /** Tenants whose coverage restarted (a report may have been lost before archiving). */
  coverageResets: Tenant[];
}

interface HeadRow {
  org_id: string;
  project_id: string;
  last_report_id: string;
  last_hash: string;
  complete_after: string;
  purged_through: string;
  chained: string;
  coverage_resets: number;
}

interface Link {
  reportId: number;
  payload: string;
  message: Record<string, unknown>;
  stored: boolean;
}

function reportTs(message: Record<string, unknown>, now: Date): Date {
  const t = typeof message.ts === "string" ? Date.parse(message.ts) : Number.NaN;
  return Number.isFinite(t) ? new Date(t) : now;
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

/**
 * Inserts archive rows (chained when `hashes[i]` is given) in one statement, sent as one JSON
 * array (`json_to_recordset`): one parameter however many rows, escaped by the native
 * `JSON.stringify`. Rows already there are left alone (the primary key makes a redelivery a no-op).
 * @returns rows inserted.
 */
async function insertRows(
  trx: Transaction<Database>,
  tenant: Tenant,
  links: readonly Link[],
  hashes: readonly (readonly [string, string] | null)[],
  now: Date,
): Promise<number> {
  if (links.length === 0) return 0;
  const rows = links.map((l, i) => {
    const report = isObject(l.message.report) ? l.message.report : {};
    const causality = isObject(l.message.causality) ? l.message.causality : {};
    return {
      r: l.reportId,
      t: str(report.type) ?? "unknown",
      c: str(causality.correlation_id),
      m: str(causality.command_id),
      a: str(causality.ask_id),
      k: causality,
      p: l.payload,
      s: reportTs(l.message, now).toISOString(),
      v: hashes[i]?.[0] ?? null,
      h: hashes[i]?.[1] ?? null,
    };
  });
  const r = await sql`
    insert into agent_report_events
      (org_id, project_id, report_id, type, correlation_id, command_id, ask_id, causality, payload, ts, prev_hash, hash)
    select ${tenant.org_id}, ${tenant.project_id}, x.r, x.t, x.c, x.m, x.a, x.k, x.p, x.s, x.v, x.h
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as x(r bigint, t text, c text, m text, a text, k jsonb, p text, s timestamptz, v text, h text)
    on conflict do nothing`.execute(trx);
  return Number(r.numAffectedRows ?? 0);
}

/**
 * Archives a batch in one transaction (the caller's), keeping invariant (C) of the module doc:
 * locks the heads of the batch's tenants (and `alsoChain`) in (org_id, project_id) order — two
 * archivers never deadlock — then per tenant: skips reports at or below its head or its purge
 * mark, chains (inserts, or updates if stored earlier unchained) its reports at or below B in
 * report_id order from the head's hash, and stores its reports above B unchained.
 *
 * @throws pg / kysely errors (the caller rolls back and retries the whole batch later; every
 *   step is idempotent).
 */
export async function appendReports(trx: Transaction<Database>, a: AppendArgs): Promise<AppendResult> {
  const out: AppendResult = { inserted: 0, chained: 0, skipped: 0, deferred: 0, coverageResets: [] };
  const byTenant = new Map<string, { tenant: Tenant; reports: ArchivableReport[] }>();
  for (const r of a.reports) {
    const k = tenantKey(r.tenant);
    const e = byTenant.get(k);
    if (e) e.reports.push(r);
    else byTenant.set(k, { tenant: r.tenant, reports: [r] });
  }
  for (const t of a.alsoChain ?? []) {
    const k = tenantKey(t);
    if (!byTenant.has(k)) byTenant.set(k, { tenant: t, reports: [] });
  }
  if (byTenant.size === 0) return out;
  const keys = [...byTenant.keys()].sort();
  const orgs = keys.map((k) => (byTenant.get(k) as { tenant: Tenant }).tenant.org_id);
  const projects = keys.map((k) => (byTenant.get(k) as { tenant: Tenant }).tenant.project_id);

  // Heads: create missing ones, then lock all in one sorted pass.
  await sql`
    insert into agent_report_chains (org_id, project_id)
    select * from unnest(${orgs}::text[], ${projects}::text[]) order by 1, 2
    on conflict do nothing`.execute(trx);
  const heads = await sql<HeadRow>`
    select org_id, project_id, last_report_id, last_hash, complete_after, purged_through, chained, coverage_resets
    from agent_report_chains
    where (org_id, project_id) in (select * from unnest(${orgs}::text[], ${projects}::text[]))
    order by org_id, project_id
    for update`.execute(trx);

  for (const head of heads.rows) {
    const key = `${head.org_id}/${head.project_id}`;
    const entry = byTenant.get(key);
    if (!entry) continue;
    const { tenant } = entry;
    const last = Number(head.last_report_id);
    const purged = Number(head.purged_through);
    const seen = new Set<number>();
    const incoming: ArchivableReport[] = [];
    for (const r of entry.reports) {
      if (r.reportId <= last || r.reportId <= purged || seen.has(r.reportId)) {
        out.skipped++;
        continue;
      }
      seen.add(r.reportId);
      incoming.push(r);
    }
    const bound = a.chainThrough;
    // Rows stored earlier, unchained, that the bound now lets us chain (usually none).
    const waiting =
      bound > last
        ? await sql<{ report_id: string; payload: string }>`
            select report_id, payload from agent_report_events
            where org_id = ${tenant.org_id} and project_id = ${tenant.project_id}
              and report_id > ${Math.max(last, purged)} and report_id <= ${bound} and hash is null
            order by report_id`.execute(trx)
        : { rows: [] };
    const stored = new Set(waiting.rows.map((w) => Number(w.report_id)));
    const links: Link[] = waiting.rows.map((w) => ({
      reportId: Number(w.report_id),
      payload: w.payload,
      message: JSON.parse(w.payload) as Record<string, unknown>,
      stored: true,
    }));
    const later: Link[] = [];
    for (const r of incoming) {
      if (stored.has(r.reportId)) {
        out.skipped++;
        continue;
      }
      const l: Link = { reportId: r.reportId, payload: r.payload, message: r.message, stored: false };
      if (r.reportId <= bound) links.push(l);
      else later.push(l);
    }
    links.sort((x, y) => x.reportId - y.reportId);

    if (links.length > 0) {
      const first = links[0] as Link;
      const proven = a.proofs.get(key);
      let completeAfter = Number(head.complete_after);
      let resets = head.coverage_resets;
      // A proof for h covers every head after h (retention drops a subject's oldest first).
      if (proven === undefined || proven > last) {
        completeAfter = Math.max(completeAfter, purged, first.reportId - 1);
        if (Number(head.chained) > 0) {
          resets++;
          out.coverageResets.push(tenant);
        }
      }
      let prev = head.last_hash;
      const hashes: (readonly [string, string])[] = [];
      for (const l of links) {
        const h = chainHash(prev, {
          org_id: tenant.org_id,
          project_id: tenant.project_id,
          report_id: String(l.reportId),
          report: l.message,
        });
        hashes.push([prev, h]);
        prev = h;
      }
      const fresh = links.flatMap((l, i) => (l.stored ? [] : [[l, hashes[i] as readonly [string, string]] as const]));
      out.inserted += await insertRows(
        trx,
        tenant,
        fresh.map(([l]) => l),
        fresh.map(([, h]) => h),
        a.now,
      );
      const old = links.flatMap((l, i) => (l.stored ? [[l, hashes[i] as readonly [string, string]] as const] : []));
      if (old.length > 0)
        await sql`
          update agent_report_events e set prev_hash = v.prev_hash, hash = v.hash
          from unnest(${old.map(([l]) => String(l.reportId))}::bigint[], ${old.map(([, h]) => h[0])}::text[],
                      ${old.map(([, h]) => h[1])}::text[]) as v(report_id, prev_hash, hash)
          where e.org_id = ${tenant.org_id} and e.project_id = ${tenant.project_id}
            and e.report_id = v.report_id and e.hash is null`.execute(trx);
      const top = links.at(-1) as Link;
      await trx
        .updateTable("agent_report_chains")
        .set({
          last_report_id: top.reportId,
          last_hash: prev,
          complete_after: completeAfter,
          chained: sql`chained + ${links.length}`,
          coverage_resets: resets,
          updated_at: a.now,
        })
        .where("org_id", "=", tenant.org_id)
        .where("project_id", "=", tenant.project_id)
        .execute();
      out.chained += links.length;
    }
    if (later.length > 0) {
      const n = await insertRows(
        trx,
        tenant,
        later,
        later.map(() => null),
        a.now,
      );
      out.inserted += n;
      out.deferred += n;
    }
  }
  return out;
}

/**
 * Tenants with stored rows still waiting to be chained at or below `bound` (after a batch of
 * another replica, or a redelivery, went in unchained). Cheap: a partial index holds only
 * unchained rows.
 */
export async function tenantsWaitingToChain(
  db: Transaction<Database> | import("kysely").Kysely<Database>,
  bound: number,
): Promise<Tenant[]> {
  const r = await sql<Tenant>`
    select distinct org_id, project_id from agent_report_events where hash is null and report_id <= ${bound}`.execute(
    db,
  );
  return r.rows.map((t) => ({ org_id: t.org_id, project_id: t.project_id }));
}

/** Rows stored but not yet chained (all tenants). */
export async function countUnchained(db: import("kysely").Kysely<Database>): Promise<number> {
  const r = await sql<{ n: string }>`select count(*)::bigint as n from agent_report_events where hash is null`.execute(
    db,
  );
  return Number(r.rows[0]?.n ?? 0);
}

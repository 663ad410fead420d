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
import { isCompactReport, type Tenant, tenantFromSubject } from "@nexus/contracts";
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
  /** The caller knows every tenant's head row exists already (skips creating missing ones). */
  headsExist?: boolean;
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
  /** Per tenant key (`org/project`), its chain head after the transaction. */
  heads: Map<string, number>;
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

/** One row to insert (chained when `prev`/`hash` are set), as sent in the JSON parameter. */
interface NewRow {
  o: string;
  j: string;
  r: number;
  t: string;
  c: string | null;
  m: string | null;
  a: string | null;
  k: Record<string, unknown>;
  p: string;
  s: string;
  v: string | null;
  h: string | null;
  /** compact */
  z: boolean;
}

function newRow(tenant: Tenant, l: Link, hash: readonly [string, string] | null, now: Date): NewRow {
  const report = isObject(l.message.report) ? l.message.report : {};
  const causality = isObject(l.message.causality) ? l.message.causality : {};
  return {
    o: tenant.org_id,
    j: tenant.project_id,
    r: l.reportId,
    t: str(report.type) ?? "unknown",
    c: str(causality.correlation_id),
    m: str(causality.command_id),
    a: str(causality.ask_id),
    k: causality,
    p: l.payload,
    s: reportTs(l.message, now).toISOString(),
    v: hash?.[0] ?? null,
    h: hash?.[1] ?? null,
    z: isCompactReport(l.payload, l.message),
  };
}

/**
 * Archives a batch in one transaction (the caller's), keeping invariant (C) of the module doc:
 * locks the heads of the batch's tenants (and `alsoChain`) in (org_id, project_id) order — two
 * archivers never deadlock — then per tenant: skips reports at or below its head or its purge
 * mark, chains (inserts, or updates if stored earlier unchained) its reports at or below B in
 * report_id order from the head's hash, and stores its reports above B unchained.
 *
 * A constant number of statements however many tenants and reports: heads (2), the rows
 * waiting to be chained (1), one insert of every new row sent as one JSON parameter
 * (`json_to_recordset`, escaped by the native `JSON.stringify`), one update of waiting rows
 * when there are any, one update of every head.
 *
 * @throws pg / kysely errors (the caller rolls back and retries the whole batch later; every
 *   step is idempotent).
 */
export async function appendReports(trx: Transaction<Database>, a: AppendArgs): Promise<AppendResult> {
  const out: AppendResult = { inserted: 0, chained: 0, skipped: 0, deferred: 0, coverageResets: [], heads: new Map() };
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
  const bound = a.chainThrough;

  // Heads: create missing ones, then lock all in one sorted pass.
  if (!a.headsExist)
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
  // Rows stored earlier, unchained, that the bound now lets us chain (usually none). A statement
  // of its own, after the locks: it must see what the previous holder of a head lock committed.
  const waitingRows = await sql<{ org_id: string; project_id: string; report_id: string; payload: string }>`
    select e.org_id, e.project_id, e.report_id, e.payload
    from agent_report_events e
    join agent_report_chains h on h.org_id = e.org_id and h.project_id = e.project_id
    where e.hash is null and e.report_id <= ${bound}
      and e.report_id > h.last_report_id and e.report_id > h.purged_through
      and (e.org_id, e.project_id) in (select * from unnest(${orgs}::text[], ${projects}::text[]))
    order by e.report_id`.execute(trx);
  const waitingBy = new Map<string, Link[]>();
  for (const w of waitingRows.rows) {
    const k = `${w.org_id}/${w.project_id}`;
    const list = waitingBy.get(k) ?? [];
    list.push({
      reportId: Number(w.report_id),
      payload: w.payload,
      message: JSON.parse(w.payload) as Record<string, unknown>,
      stored: true,
    });
    waitingBy.set(k, list);
  }

  const inserts: NewRow[] = [];
  const chainUpdates: { o: string; j: string; r: number; v: string; h: string }[] = [];
  const headUpdates: { o: string; j: string; l: number; h: string; c: number; n: number; x: number }[] = [];
  for (const head of heads.rows) {
    const key = `${head.org_id}/${head.project_id}`;
    const entry = byTenant.get(key);
    if (!entry) continue;
    const { tenant } = entry;
    const last = Number(head.last_report_id);
    const purged = Number(head.purged_through);
    out.heads.set(key, last);
    const links = waitingBy.get(key) ?? [];
    const stored = new Set(links.map((l) => l.reportId));
    const seen = new Set<number>();
    const later: Link[] = [];
    for (const r of entry.reports) {
      if (r.reportId <= last || r.reportId <= purged || seen.has(r.reportId) || stored.has(r.reportId)) {
        out.skipped++;
        continue;
      }
      seen.add(r.reportId);
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
      for (const l of links) {
        const h = chainHash(prev, {
          org_id: tenant.org_id,
          project_id: tenant.project_id,
          report_id: String(l.reportId),
          report: l.message,
        });
        if (l.stored) chainUpdates.push({ o: tenant.org_id, j: tenant.project_id, r: l.reportId, v: prev, h });
        else inserts.push(newRow(tenant, l, [prev, h], a.now));
        prev = h;
      }
      out.heads.set(key, (links.at(-1) as Link).reportId);
      headUpdates.push({
        o: tenant.org_id,
        j: tenant.project_id,
        l: (links.at(-1) as Link).reportId,
        h: prev,
        c: completeAfter,
        n: links.length,
        x: resets,
      });
      out.chained += links.length;
    }
    for (const l of later) inserts.push(newRow(tenant, l, null, a.now));
  }

  if (inserts.length > 0 || headUpdates.length > 0) {
    // New rows and the heads they extend, in one statement.
    const r = await sql<{ inserted: string; chained: string }>`
      with ins as (
        insert into agent_report_events
          (org_id, project_id, report_id, type, correlation_id, command_id, ask_id, causality, payload, compact, ts, prev_hash, hash)
        select x.o, x.j, x.r, x.t, x.c, x.m, x.a, x.k, x.p, x.z, x.s, x.v, x.h
        from json_to_recordset(${JSON.stringify(inserts)}::json)
          as x(o text, j text, r bigint, t text, c text, m text, a text, k jsonb, p text, z boolean, s timestamptz, v text, h text)
        on conflict do nothing
        returning hash is not null as chained
      ), upd as (
        update agent_report_chains c
        set last_report_id = v.l, last_hash = v.h, complete_after = v.c, chained = c.chained + v.n,
            coverage_resets = v.x, updated_at = ${a.now}
        from json_to_recordset(${JSON.stringify(headUpdates)}::json)
          as v(o text, j text, l bigint, h text, c bigint, n bigint, x integer)
        where c.org_id = v.o and c.project_id = v.j
        returning 1
      )
      select (select count(*) from ins) as inserted, (select count(*) from ins where chained) as chained`.execute(trx);
    const inserted = Number(r.rows[0]?.inserted ?? 0);
    const chainedInserted = Number(r.rows[0]?.chained ?? 0);
    // Every chained row is new by construction (older ones were skipped or read as waiting); if
    // one was already there the heads would run past an unchained row: refuse, roll back, retry.
    if (chainedInserted !== inserts.filter((x) => x.h !== null).length)
      throw new Error("archive: a row to chain was already stored; the batch is retried");
    out.inserted = inserted;
    out.deferred = inserted - chainedInserted;
  }
  if (chainUpdates.length > 0)
    await sql`
      update agent_report_events e set prev_hash = v.v, hash = v.h
      from json_to_recordset(${JSON.stringify(chainUpdates)}::json) as v(o text, j text, r bigint, v text, h text)
      where e.org_id = v.o and e.project_id = v.j and e.report_id = v.r and e.hash is null`.execute(trx);
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

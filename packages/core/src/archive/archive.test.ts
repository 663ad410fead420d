/**
 * The archive's transitions on a real Postgres: chaining in report_id order whatever the
 * arrival order, coverage when the proof is missing, retention pruning as a prefix, the tenant
 * purge, and the row guards.
 */
import type { Tenant } from "@nexus/contracts";
import { createTestDatabase, type TestDatabase, uniqueTenant } from "@nexus/testkit";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ArchivableReport, appendReports, tenantKey } from "./append.ts";
import { ChainVerifier, GENESIS_HASH } from "./chain.ts";
import { pruneArchive, purgeTenant } from "./maintain.ts";
import { archiveAfter, archiveCovers, chainHead, exportChain, historyPage } from "./read.ts";

let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

const DAY = 86_400_000;
let seq = 1_000;

/** A report of `t` with the next global sequence (report_ids are stream-unique). */
function report(t: Tenant, o: { ts?: Date; seq?: number } = {}): ArchivableReport {
  const id = o.seq ?? ++seq;
  const message = {
    report: { type: "command.started", status: "running", title: `r${id}` },
    causality: { correlation_id: `c${id}`, command_id: `cmd${id}` },
    tenant: t,
    ts: (o.ts ?? new Date()).toISOString(),
  };
  return { tenant: t, reportId: id, payload: JSON.stringify(message), message };
}

const proven = (...ts: Tenant[]) => new Map(ts.map((t) => [tenantKey(t), 0]));

async function append(reports: ArchivableReport[], chainThrough: number, proofs: Map<string, number>, also?: Tenant[]) {
  return tdb.db
    .transaction()
    .execute((trx) =>
      appendReports(trx, { reports, chainThrough, proofs, now: new Date(), ...(also ? { alsoChain: also } : {}) }),
    );
}

async function rows(t: Tenant) {
  return tdb.db
    .selectFrom("agent_report_events")
    .select(["report_id", "payload", "prev_hash", "hash"])
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .orderBy("report_id")
    .execute();
}

async function verify(t: Tenant, anchor = GENESIS_HASH) {
  const v = new ChainVerifier({ anchors: { [tenantKey(t)]: anchor } });
  for (const r of await rows(t))
    v.push({
      report_id: String(r.report_id),
      org_id: t.org_id,
      project_id: t.project_id,
      report: JSON.parse(r.payload),
      prev_hash: r.prev_hash,
      hash: r.hash,
    });
  return v.result();
}

describe("appendReports", () => {
  it("chains in report_id order whatever order the batches arrive in; above the bound rows wait unchained", async () => {
    const t = uniqueTenant();
    const rs = Array.from({ length: 6 }, () => report(t));
    const ids = rs.map((r) => r.reportId);
    // A later batch first (another replica), with a bound below it: stored unchained.
    const late = await append(rs.slice(3), ids[0] as number, proven(t));
    expect(late).toMatchObject({ inserted: 3, chained: 0, deferred: 3 });
    expect((await chainHead(tdb.db, t))?.last_report_id).toBe(0);
    // The earlier batch with a bound past all: it chains its own and the waiting rows, in order.
    const early = await append(rs.slice(0, 3), ids[5] as number, proven(t));
    expect(early).toMatchObject({ inserted: 3, chained: 6 });
    expect((await rows(t)).map((r) => Number(r.report_id))).toEqual(ids);
    expect((await verify(t)).ok).toBe(true);
    // Redelivered: skipped, nothing changes.
    const again = await append(rs, ids[5] as number, proven(t));
    expect(again).toMatchObject({ inserted: 0, chained: 0, skipped: 6 });
  });

  it("without a proof the tenant's coverage restarts at the appended reports; the chain still links", async () => {
    const t = uniqueTenant();
    const a = report(t);
    await append([a], a.reportId, proven(t));
    seq += 50; // reports of t in between were lost to retention
    const b = report(t);
    const r = await append([b], b.reportId, new Map());
    expect(r.coverageResets).toEqual([t]);
    const head = await chainHead(tdb.db, t);
    expect(head).toMatchObject({ complete_after: b.reportId - 1, coverage_resets: 1, last_report_id: b.reportId });
    expect((await verify(t)).ok).toBe(true);
    const now = new Date();
    expect(await archiveCovers(tdb.db, t, a.reportId, { keepDays: 365, now })).toBe(false);
    expect(await archiveCovers(tdb.db, t, b.reportId, { keepDays: 365, now })).toBe(true);
  });
});

describe("reads", () => {
  it("cursor rule, replay batches with their proof, history pages, export ranges", async () => {
    const t = uniqueTenant();
    const other = uniqueTenant();
    const rs = Array.from({ length: 10 }, (_, i) => report(t, { ts: new Date(Date.UTC(2026, 0, 1 + i)) }));
    const foreign = report(other);
    await append([...rs, foreign], foreign.reportId, proven(t, other));
    const ids = rs.map((r) => r.reportId);
    const now = new Date(Date.UTC(2026, 0, 20));
    const o = { keepDays: 365, now };
    expect(await archiveCovers(tdb.db, t, ids[2] as number, o)).toBe(true);
    expect(await archiveCovers(tdb.db, t, foreign.reportId, o)).toBe(false); // another tenant's id
    expect(await archiveCovers(tdb.db, t, (ids[9] as number) + 10_000, o)).toBe(false); // beyond the newest
    expect(await archiveCovers(tdb.db, t, 0, o)).toBe(true); // nothing pruned or purged
    expect(await archiveCovers(tdb.db, t, ids[2] as number, { keepDays: 1, now })).toBe(false); // older than retention
    expect((await archiveAfter(tdb.db, t, ids[2] as number, 3))?.map((r) => r.seq)).toEqual(ids.slice(3, 6));
    expect((await archiveAfter(tdb.db, t, 0, 2))?.map((r) => r.seq)).toEqual(ids.slice(0, 2));
    expect(await archiveAfter(tdb.db, t, (ids[9] as number) + 1, 3)).toBeNull(); // no such row: no proof
    const page1 = await historyPage(tdb.db, t, { limit: 4 });
    expect(page1.reports.map((r) => r.seq)).toEqual(ids.slice(6).reverse());
    expect(page1.more).toBe(true);
    const page3 = await historyPage(tdb.db, t, { before: ids[2] as number, limit: 4 });
    expect(page3.reports.map((r) => r.seq)).toEqual(ids.slice(0, 2).reverse());
    expect(page3.more).toBe(false);
    const exported: number[] = [];
    for await (const r of exportChain(tdb.db, t, {
      from: new Date(Date.UTC(2026, 0, 3)),
      to: new Date(Date.UTC(2026, 0, 6)),
      pageSize: 2,
    }))
      exported.push(r.seq);
    expect(exported).toEqual(ids.slice(2, 5));
  });
});

describe("pruneArchive", () => {
  it("deletes a prefix of reports older than ARCHIVE_KEEP_DAYS, in batches, and raises complete_after", async () => {
    const t = uniqueTenant();
    const now = new Date();
    const old = (d: number) => new Date(now.getTime() - d * DAY);
    // ts: 400, 390, 10 (young), 380 (old but behind a young one), 5 days old
    const rs = [400, 390, 10, 380, 5].map((d) => report(t, { ts: old(d) }));
    await append(rs, (rs.at(-1) as ArchivableReport).reportId, proven(t));
    const n = await pruneArchive(tdb.db, { keepDays: 365, now, batchSize: 1 });
    expect(n).toBeGreaterThanOrEqual(2);
    expect((await rows(t)).map((r) => Number(r.report_id))).toEqual(rs.slice(2).map((r) => r.reportId));
    const head = await chainHead(tdb.db, t);
    expect(head?.complete_after).toBe(rs[1]?.reportId);
    expect(await archiveCovers(tdb.db, t, rs[1]?.reportId as number, { keepDays: 365, now })).toBe(false);
    expect(await archiveCovers(tdb.db, t, rs[2]?.reportId as number, { keepDays: 365, now })).toBe(true);
    expect(await archiveCovers(tdb.db, t, 0, { keepDays: 365, now })).toBe(false);
    // the rest still verifies, anchored at the first remaining row's prev_hash
    const first = (await rows(t))[0];
    expect((await verify(t, first?.prev_hash as string)).ok).toBe(true);
  });
});

describe("purgeTenant", () => {
  it("erases the tenant's rows everywhere (history too), leaves an audit entry, and the archive drops late reports", async () => {
    const t = uniqueTenant();
    const other = uniqueTenant();
    const rs = Array.from({ length: 5 }, () => report(t));
    await append([...rs, report(other)], seq, proven(t, other));
    await tdb.db
      .insertInto("action_history")
      .values({
        org_id: t.org_id,
        project_id: t.project_id,
        ask_id: "a1",
        command_id: "c1",
        event: "decided",
        decision: "approve",
        executor_id: "alice",
        correlation_id: "x",
      })
      .execute();
    await tdb.db
      .insertInto("tenant_settings")
      .values({
        org_id: t.org_id,
        project_id: t.project_id,
        profile: "{}",
        persona: "{}",
        skin: "{}",
        compliance: "{}",
        updated_at: new Date(),
      })
      .execute();
    const headBefore = await chainHead(tdb.db, t);
    const late = report(t); // published before the purge read W, archived after it
    const W = late.reportId;
    const out = await purgeTenant(tdb.db, {
      tenant: t,
      reportsThrough: W,
      principal: "root",
      correlationId: "c-purge",
      now: new Date(),
      batchSize: 2,
    });
    expect(out.row.counts).toMatchObject({ agent_report_events: 5, action_history: 1, tenant_settings: 1 });
    expect(out.row.chain).toEqual({ report_id: headBefore?.last_report_id, hash: headBefore?.last_hash });
    expect(out.effects.reports[0]?.report).toMatchObject({
      type: "tenant.purged",
      purge: { reports_through: String(W) },
    });
    expect(await rows(t)).toEqual([]);
    expect((await rows(other)).length).toBe(1);
    const audit = await tdb.db.selectFrom("tenant_purges").selectAll().where("org_id", "=", t.org_id).execute();
    expect(audit).toMatchObject([{ principal: "root", correlation_id: "c-purge", reports_through: String(W) }]);
    // the late report and an older redelivery are dropped; a new one chains on from the old head
    const next = report(t);
    const r = await append([late, rs[0] as ArchivableReport, next], next.reportId, proven(t));
    expect(r).toMatchObject({ chained: 1, skipped: 2 });
    const kept = await rows(t);
    expect(kept.map((x) => Number(x.report_id))).toEqual([next.reportId]);
    expect(kept[0]?.prev_hash).toBe(headBefore?.last_hash);
    expect(await archiveCovers(tdb.db, t, rs[4]?.reportId as number, { keepDays: 365, now: new Date() })).toBe(false);
  });
});

describe("row guards", () => {
  it("a chained row cannot be edited, and no row can be deleted outside pruning and purges", async () => {
    const t = uniqueTenant();
    const a = report(t);
    await append([a], a.reportId, proven(t));
    await expect(
      sql`update agent_report_events set payload = '{}' where report_id = ${a.reportId}`.execute(tdb.db),
    ).rejects.toThrow(/immutable/);
    await expect(sql`delete from agent_report_events where report_id = ${a.reportId}`.execute(tdb.db)).rejects.toThrow(
      /pruning or a tenant purge/,
    );
    await expect(sql`delete from tenant_purges`.execute(tdb.db)).rejects.toThrow(/append-only/);
    await tdb.db
      .insertInto("action_history")
      .values({
        org_id: t.org_id,
        project_id: t.project_id,
        ask_id: "a",
        command_id: "c",
        event: "expired",
        executor_id: "system",
        correlation_id: "x",
      })
      .execute();
    await expect(sql`delete from action_history`.execute(tdb.db)).rejects.toThrow(/append-only/);
    // the purge's exception names one tenant: another tenant's name does not open it
    await expect(
      tdb.db.transaction().execute(async (trx) => {
        await sql`select set_config('nexus.erase_tenant', 'someone/else', true)`.execute(trx);
        await sql`delete from action_history where org_id = ${t.org_id}`.execute(trx);
      }),
    ).rejects.toThrow(/append-only/);
  });
});

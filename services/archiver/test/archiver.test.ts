/**
 * The archiver on real NATS and Postgres: every report once, in order, chained; refused
 * messages; two archivers racing; lag in the metrics and /ready; coverage restarts when
 * retention overtook it; chainBound.
 */
import { subjects } from "@nexus/contracts";
import { chainHead } from "@nexus/core";
import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chainBound } from "../src/archiver.ts";
import {
  type ArchiverHarness,
  archivedRows,
  expectArchiveMatchesStream,
  key,
  publishInterleaved,
  startArchiverHarness,
  waitArchived,
} from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;

beforeAll(async () => {
  nats = await natsForTest({ consumerAckWaitMs: 2000 });
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb?.drop();
  await nats?.stop();
});

describe("chainBound", () => {
  it("extends the ack floor through the batch while it has no hole", () => {
    expect(chainBound(10, [11, 12, 13])).toBe(13);
    expect(chainBound(10, [12, 13])).toBe(10);
    expect(chainBound(10, [9, 10, 11, 13])).toBe(11);
    expect(chainBound(0, [])).toBe(0);
  });
});

describe("archiver", () => {
  let a: ArchiverHarness;
  beforeAll(async () => {
    a = await startArchiverHarness({ nats, db: tdb.db, env: { ARCHIVER_BATCH_SIZE: "200" } });
  });
  afterAll(async () => a?.close());

  it("archives every report of every tenant exactly once, in order, with a chain that verifies from genesis", async () => {
    const tenants = [uniqueTenant("a"), uniqueTenant("b"), uniqueTenant("c")];
    const ids = await publishInterleaved(a.js, tenants, 300);
    for (const t of tenants) await waitArchived(tdb.db, t, (ids.get(key(t)) as number[]).at(-1) as number);
    for (const t of tenants) await expectArchiveMatchesStream(tdb.db, a.js, t, ids.get(key(t)));
    const head = await chainHead(tdb.db, tenants[0] as (typeof tenants)[0]);
    expect(head).toMatchObject({ chained: 300, complete_after: 0, coverage_resets: 0 });
    // the exact published bytes are kept
    const rows = await archivedRows(tdb.db, tenants[0] as (typeof tenants)[0]);
    const m = await a.jsm.streams.getMessage("NEXUS_REPORTS", { seq: Number(rows[0]?.report_id) });
    expect(rows[0]?.payload).toBe(new TextDecoder().decode(m?.data));
  });

  it("a message that is not a report of its subject's tenant is acknowledged and not archived", async () => {
    const t = uniqueTenant("forge");
    const other = uniqueTenant("victim");
    const forged = await a.js.publish(
      subjects.report(t),
      JSON.stringify({
        report: { type: "command.started" },
        causality: { correlation_id: "x" },
        tenant: other,
        ts: "x",
      }),
    );
    const garbage = await a.js.publish(subjects.report(t), "not json");
    const ids = await publishInterleaved(a.js, [t], 3);
    await waitArchived(tdb.db, t, (ids.get(key(t)) as number[]).at(-1) as number);
    const archived = (await archivedRows(tdb.db, t)).map((r) => Number(r.report_id));
    expect(archived).toEqual(ids.get(key(t)));
    expect(archived).not.toContain(forged.seq);
    expect(archived).not.toContain(garbage.seq);
    expect((await archivedRows(tdb.db, other)).length).toBe(0);
    await waitFor(async () => (await a.service.pollLag()).lag_reports === 0, 5000, "lag 0");
  });

  it("retention pruning deletes reports older than ARCHIVE_KEEP_DAYS, oldest first", async () => {
    const t = uniqueTenant("prune");
    const old = new Date(Date.now() - 400 * 86_400_000).toISOString();
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) {
      const ts = i < 3 ? old : new Date().toISOString();
      const ack = await a.js.publish(
        subjects.report(t),
        JSON.stringify({
          report: { type: "command.started", status: "running", title: `p${i}` },
          causality: { correlation_id: "c" },
          tenant: t,
          ts,
        }),
      );
      ids.push(ack.seq);
    }
    await waitArchived(tdb.db, t, ids.at(-1) as number);
    expect(await a.service.prune()).toBeGreaterThanOrEqual(3);
    expect((await archivedRows(tdb.db, t)).map((r) => Number(r.report_id))).toEqual([ids[3]]);
    expect((await chainHead(tdb.db, t))?.complete_after).toBe(ids[2]);
    expect(await (await fetch(`${a.baseUrl}/metrics`)).text()).toMatch(/^archiver_pruned_rows_total [3-9]/m);
  });

  it("exposes its lag (stream last seq − archived seq, consumer pending) in the metrics and /ready", async () => {
    const lag = await a.service.pollLag();
    expect(lag.lag_reports).toBe(0);
    expect(lag.archived_seq).toBe(lag.stream_last_seq);
    const ready = await (await fetch(`${a.baseUrl}/ready`)).json();
    expect(ready.status).toBe("ready");
    expect(ready.checks).toEqual({ nats: true, postgres: true, consumer: true });
    expect(ready.details.archive).toMatchObject({ lag_reports: 0, num_pending: 0, unchained_rows: 0 });
    const metrics = await (await fetch(`${a.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^archiver_lag_reports 0$/m);
    expect(metrics).toMatch(/^archiver_reports_total\{outcome="chained"\} \d+/m);
    expect(metrics).toMatch(/^archiver_reports_total\{outcome="refused"\} 2$/m);
  });
});

describe("while the archiver is held", () => {
  it("the lag grows in /ready and shrinks to 0 once it is released", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let holding = true;
    const a = await startArchiverHarness({
      nats,
      db: tdb.db,
      faults: async (step) => {
        if (step === "archiver:before-commit" && holding) await held;
      },
    });
    try {
      const t = uniqueTenant("lag");
      const ids = await publishInterleaved(a.js, [t], 50);
      await waitFor(async () => (await a.service.pollLag()).lag_reports >= 50, 5000, "lag ≥ 50");
      const ready = await (await fetch(`${a.baseUrl}/ready`)).json();
      expect(ready.details.archive.lag_reports).toBeGreaterThanOrEqual(50);
      holding = false;
      release();
      await waitArchived(tdb.db, t, (ids.get(key(t)) as number[]).at(-1) as number);
      await waitFor(async () => (await a.service.pollLag()).lag_reports === 0, 5000, "lag 0");
    } finally {
      release();
      await a.close();
    }
  });
});

/**
 * The archiver survives restarts of itself (SIGKILL mid-batch, before and after its commit),
 * of NATS and of Postgres, and several archivers racing on one consumer keep every tenant's
 * chain correct. The oracle is always the same: the archive equals the stream, every row is
 * chained, and the chain verifies from genesis.
 */
import { createDb, type Database } from "@nexus/core";
import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import type { Kysely } from "kysely";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  archivedRows,
  expectArchiveMatchesStream,
  key,
  publishInterleaved,
  spawnArchiver,
  startArchiverHarness,
  tcpProxy,
  waitArchived,
} from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;

beforeAll(async () => {
  nats = await natsForTest({ consumerAckWaitMs: 1500, streamEventKeep: 100_000 });
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb?.drop();
  await nats?.stop();
});

async function publisher() {
  const { connectNats } = await import("@nexus/messaging");
  const { jetstream } = await import("@nats-io/jetstream");
  const { pino } = await import("pino");
  const nc = await connectNats({ url: nats.url, name: "publisher", logger: pino({ level: "silent" }) });
  return { nc, js: jetstream(nc) };
}

const lastOf = (ids: Map<string, number[]>, k: string) => (ids.get(k) as number[]).at(-1) as number;

describe("archiver restarts (a separate process, SIGKILLed)", () => {
  it.each(["archiver:before-commit", "archiver:after-commit", "archiver:after-ack"])(
    "killed at %s of its first batch, restarted: every report archived once, in order",
    async (step) => {
      const { nc, js } = await publisher();
      try {
        const tenants = [uniqueTenant("kill"), uniqueTenant("kill")];
        const ids = await publishInterleaved(js, tenants, 150);
        const crashing = await spawnArchiver({
          natsUrl: nats.url,
          databaseUrl: tdb.url,
          env: { FAULT_INJECT_CRASH_AT: step, ARCHIVER_BATCH_SIZE: "100" },
        });
        await crashing.exited;
        expect(crashing.child.signalCode).toBe("SIGKILL");
        const before = (await archivedRows(tdb.db, tenants[0] as (typeof tenants)[0])).length;
        if (step === "archiver:before-commit") expect(before).toBe(0);
        const again = await spawnArchiver({ natsUrl: nats.url, databaseUrl: tdb.url });
        try {
          for (const t of tenants) await waitArchived(tdb.db, t, lastOf(ids, key(t)));
          for (const t of tenants) await expectArchiveMatchesStream(tdb.db, js, t, ids.get(key(t)));
        } finally {
          await again.kill("SIGTERM");
        }
        expect(await again.exited).toBe(0);
      } finally {
        await nc.close();
      }
    },
  );

  it("killed at random moments while reports keep coming: nothing lost, nothing twice", async () => {
    const { nc, js } = await publisher();
    try {
      const tenants = [uniqueTenant("chaos"), uniqueTenant("chaos"), uniqueTenant("chaos")];
      const publishing = publishInterleaved(js, tenants, 600, { window: 8 });
      for (let i = 0; i < 3; i++) {
        const p = await spawnArchiver({ natsUrl: nats.url, databaseUrl: tdb.url, env: { ARCHIVER_BATCH_SIZE: "50" } });
        await new Promise((r) => setTimeout(r, 150 + Math.random() * 400));
        await p.kill("SIGKILL");
      }
      const ids = await publishing;
      const last = await spawnArchiver({ natsUrl: nats.url, databaseUrl: tdb.url });
      try {
        for (const t of tenants) await waitArchived(tdb.db, t, lastOf(ids, key(t)), 30_000);
        for (const t of tenants) await expectArchiveMatchesStream(tdb.db, js, t, ids.get(key(t)));
      } finally {
        await last.kill("SIGTERM");
      }
    } finally {
      await nc.close();
    }
  });
});

describe("dependencies restart", () => {
  it("NATS restarts while reports are archived: every report archived once, in order", async (ctx) => {
    if (!nats.own) ctx.skip("needs a nats-server of this file's own");
    const a = await startArchiverHarness({ nats, db: tdb.db });
    const { nc, js } = await publisher();
    try {
      const t = uniqueTenant("natsr");
      const first = await publishInterleaved(js, [t], 300);
      await nats.restart();
      await waitFor(async () => (await nc.flush().then(() => true)) === true, 10_000, "publisher reconnected");
      const second = await publishInterleaved(js, [t], 300, { label: "after" });
      const all = [...(first.get(key(t)) as number[]), ...(second.get(key(t)) as number[])];
      await waitArchived(tdb.db, t, all.at(-1) as number, 30_000);
      await expectArchiveMatchesStream(tdb.db, js, t, all);
    } finally {
      await nc.close();
      await a.close();
    }
  });

  it("Postgres goes away and comes back: /ready says so, batches are retried, nothing lost or doubled", async () => {
    const proxy = await tcpProxy(tdb.url);
    const db: Kysely<Database> = createDb({ url: proxy.url, max: 4, acquireTimeoutMs: 500, statementTimeoutMs: 2000 });
    const a = await startArchiverHarness({ nats, db, dbUrl: proxy.url });
    const { nc, js } = await publisher();
    try {
      const t = uniqueTenant("pgdown");
      const first = await publishInterleaved(js, [t], 200);
      await waitArchived(tdb.db, t, lastOf(first, key(t)));
      proxy.cut();
      const during = await publishInterleaved(js, [t], 200, { label: "down" });
      await waitFor(
        async () => (await (await fetch(`${a.baseUrl}/ready`)).json()).checks?.postgres === false,
        10_000,
        "/ready reports postgres down",
      );
      expect((await fetch(`${a.baseUrl}/ready`)).status).toBe(503);
      await new Promise((r) => setTimeout(r, 1000));
      proxy.restore();
      const after = await publishInterleaved(js, [t], 200, { label: "back" });
      const all = [...(first.get(key(t)) ?? []), ...(during.get(key(t)) ?? []), ...(after.get(key(t)) ?? [])];
      await waitArchived(tdb.db, t, all.at(-1) as number, 30_000);
      await expectArchiveMatchesStream(tdb.db, js, t, all);
      await waitFor(async () => (await fetch(`${a.baseUrl}/ready`)).status === 200, 10_000, "/ready again");
      const metrics = await (await fetch(`${a.baseUrl}/metrics`)).text();
      expect(metrics).toMatch(/^archiver_batches_total\{outcome="failed"\} [1-9]/m);
    } finally {
      await nc.close();
      await a.close();
      await db.destroy();
      await proxy.close();
    }
  });
});

describe("two archivers racing on one consumer", () => {
  it("keep every tenant's chain in report_id order: each report archived once, every row chained", async () => {
    const env = { ARCHIVER_BATCH_SIZE: "25" };
    const [a, b] = await Promise.all([
      startArchiverHarness({ nats, db: tdb.db, env, name: "archiver-a" }),
      startArchiverHarness({ nats, db: tdb.db, env, name: "archiver-b" }),
    ]);
    const { nc, js } = await publisher();
    try {
      const tenants = Array.from({ length: 4 }, () => uniqueTenant("race"));
      const ids = await publishInterleaved(js, tenants, 400, { window: 128 });
      for (const t of tenants) await waitArchived(tdb.db, t, lastOf(ids, key(t)), 30_000);
      for (const t of tenants) await expectArchiveMatchesStream(tdb.db, js, t, ids.get(key(t)));
      const unchained = await sql<{
        n: string;
      }>`select count(*) as n from agent_report_events where hash is null`.execute(tdb.db);
      expect(Number(unchained.rows[0]?.n)).toBe(0);
      // both took part
      const counts = async (h: typeof a) => {
        const m = await (await fetch(`${h.baseUrl}/metrics`)).text();
        const n = (outcome: string) =>
          Number(new RegExp(`^archiver_reports_total\\{outcome="${outcome}"\\} (\\d+)`, "m").exec(m)?.[1] ?? 0);
        return { chained: n("chained"), deferred: n("deferred") };
      };
      const [ca, cb] = await Promise.all([counts(a), counts(b)]);
      // both took part, and their batches interleaved: rows were stored unchained and chained later
      expect(ca.chained + ca.deferred).toBeGreaterThan(0);
      expect(cb.chained + cb.deferred).toBeGreaterThan(0);
      expect(ca.deferred + cb.deferred).toBeGreaterThan(0);
    } finally {
      await nc.close();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

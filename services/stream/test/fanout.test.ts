import { STREAMS, type Tenant } from "@nexus/contracts";
import { readSnapshot, type SnapshotReader } from "@nexus/core";
import {
  createTestDatabase,
  natsForTest,
  type SseClient,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, publishMany, publishReport, reportIds, startHarness, strictlyIncreasing } from "./helpers.ts";

const HUB_BUFFER_SIZE = 5;
let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;
/** Runs inside the snapshot read, after W was read (see the snapshot-behind-the-hub test). */
let duringSnapshot: ((t: Tenant) => Promise<void>) | undefined;

const reader: SnapshotReader = async (db, t) => {
  const hook = duringSnapshot;
  duringSnapshot = undefined;
  if (hook) await hook(t);
  return readSnapshot(db, t);
};

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
  h = await startHarness({
    nats,
    db: tdb,
    env: { HUB_BUFFER_SIZE: String(HUB_BUFFER_SIZE), REPLAY_BATCH_SIZE: "7", HUB_IDLE_MS: "100" },
    readSnapshot: reader,
  });
});

afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

const snapshotSeen = (c: SseClient) => c.waitFor((es) => es.some((e) => e.event === "snapshot"), 10_000, "snapshot");

/** Publishes reports back to back until `stop()`; `ids` collects their report_ids. */
function backgroundPublisher(t: Tenant) {
  const ids: number[] = [];
  let running = true;
  const done = (async () => {
    let i = 0;
    while (running) ids.push(await publishReport(h.pub, t, `bg${i++}`));
  })();
  return {
    ids,
    async stop() {
      running = false;
      await done;
    },
  };
}

describe("fan-out", () => {
  it("fan-out shares one JetStream read per tenant: 50 connections → 1 hub, 1 consumer, all get every report", async () => {
    const t = uniqueTenant("fan");
    await waitFor(() => h.app.reportStream.hubCount() === 0, 5000, "no hubs from earlier tests");
    const clients = await Promise.all(Array.from({ length: 50 }, () => h.open(t)));
    await Promise.all(clients.map(snapshotSeen));
    await waitFor(() => h.app.reportStream.hubListenerCount(t) === 50, 5000, "50 listeners");
    expect(h.app.reportStream.hubCount()).toBe(1);
    expect(await h.metric("nexus_sse_hubs")).toBe(1);
    expect(await h.metric("nexus_sse_connections")).toBe(50);
    // the stream service's own (ephemeral) consumers: the archiver's durable one is not its
    const consumers = (await h.jsm.consumers.list(STREAMS.reports).next()).filter((ci) => !ci.config.durable_name);
    expect(consumers).toHaveLength(1);

    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => publishReport(h.pub, t, `f${i}`)));
    ids.sort((a, b) => a - b);
    await Promise.all(clients.map((c) => c.waitFor(() => c.named("report").length >= 30, 10_000, "30 reports")));
    for (const c of clients) expect(reportIds(c)).toEqual(ids);
    expect(await h.metric("nexus_sse_reports_sent_total")).toBeGreaterThanOrEqual(50 * 30);
    for (const c of clients) c.close();
    await waitFor(() => h.app.reportStream.hubCount() === 0, 5000, "hub stopped after the last listener left");
  });

  it("late joiner older than the hub buffer replays, then joins live without gap or duplicate", async () => {
    const t = uniqueTenant("late");
    const keeper = await h.open(t); // keeps the hub running
    await snapshotSeen(keeper);
    const history = await publishMany(h.pub, t, 30, "h");
    await keeper.waitFor(() => keeper.named("report").length >= 30, 5000, "history on the keeper");
    const replaysBefore = await h.metric("nexus_sse_replays_total");

    const bg = backgroundPublisher(t);
    await new Promise((r) => setTimeout(r, 30));
    const joiners = await Promise.all(
      [2, 9, 17, 24].map((i) => h.open(t, { headers: { "last-event-id": String(history[i]) } })),
    );
    await new Promise((r) => setTimeout(r, 300));
    await bg.stop();
    const all = [...history, ...bg.ids].sort((a, b) => a - b);
    const last = all.at(-1) as number;
    for (const [k, i] of [2, 9, 17, 24].entries()) {
      const c = joiners[k] as SseClient;
      await c.waitFor(() => reportIds(c).includes(last), 10_000, "caught up");
      const cursor = history[i] as number;
      expect(reportIds(c)).toEqual(all.filter((x) => x > cursor));
      expect(c.named("snapshot")).toHaveLength(0);
    }
    expect(await h.metric("nexus_sse_replays_total")).toBeGreaterThanOrEqual(replaysBefore + 3);
    // and they are live now
    const next = await publishReport(h.pub, t, "after");
    for (const c of joiners) await c.waitFor(() => reportIds(c).includes(next), 5000, "live after replay");
    for (const c of [keeper, ...joiners]) {
      expect(strictlyIncreasing(reportIds(c))).toBe(true);
      c.close();
    }
  });

  it("a snapshot whose report_id is behind the hub buffer replays the difference before going live", async () => {
    const t = uniqueTenant("behind");
    const keeper = await h.open(t);
    await snapshotSeen(keeper);
    await publishMany(h.pub, t, 3, "pre");
    // Between reading W and reading the database, 3 × HUB_BUFFER_SIZE reports arrive: the hub's
    // ring no longer reaches back to W, so the connection must replay (W, baseSeq] itself.
    let during: number[] = [];
    duringSnapshot = async (tt) => {
      during = await publishMany(h.pub, tt, 3 * HUB_BUFFER_SIZE, "during");
      await keeper.waitFor(() => reportIds(keeper).includes(during.at(-1) as number), 5000, "hub moved on");
    };
    const replaysBefore = await h.metric("nexus_sse_replays_total");
    const c = await h.open(t);
    await snapshotSeen(c);
    const w = Number(c.named("snapshot")[0]?.id);
    expect(w).toBeLessThan(during[0] as number);
    await c.waitFor(() => reportIds(c).includes(during.at(-1) as number), 5000, "replayed");
    const live = await publishMany(h.pub, t, 3, "live");
    await c.waitFor(() => reportIds(c).includes(live.at(-1) as number), 5000, "live");
    expect(reportIds(c)).toEqual([...during, ...live]);
    expect(await h.metric("nexus_sse_replays_total")).toBe(replaysBefore + 1);
    keeper.close();
    c.close();
  });

  it("many joiners at random cursors during a publishing burst all get exact, ordered streams", async () => {
    const t = uniqueTenant("storm");
    const seed = await publishMany(h.pub, t, 40, "seed");
    const bg = backgroundPublisher(t);
    const joiners: { c: SseClient; cursor: number }[] = [];
    for (let k = 0; k < 12; k++) {
      const cursor = seed[Math.floor(Math.random() * seed.length)] as number;
      joiners.push({ c: await h.open(t, { query: { cursor: String(cursor) } }), cursor });
      await new Promise((r) => setTimeout(r, 15));
    }
    await bg.stop();
    const all = [...seed, ...bg.ids].sort((a, b) => a - b);
    const last = all.at(-1) as number;
    for (const { c, cursor } of joiners) {
      await c.waitFor(() => reportIds(c).includes(last), 10_000, "caught up");
      expect(reportIds(c)).toEqual(all.filter((x) => x > cursor));
      c.close();
    }
  });
});

/**
 * Replay beyond JetStream's retention: a cursor the stream no longer holds but the archive
 * does is replayed from the archive with the same ids and frames, then handed over to
 * JetStream and the live hub without a gap or a duplicate — also while reports keep coming.
 * The archiver runs as its own process, as in production.
 */
import { ErrorEvent, STREAMS, type Tenant } from "@nexus/contracts";
import {
  type SseClient,
  type Stack,
  stackForTest,
  type TestDatabase,
  type TestNats,
  type TestStack,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ArchiveLog } from "../src/cursor.ts";
import { type Harness, publishMany, publishReport, reportIds, startHarness, strictlyIncreasing } from "./helpers.ts";

const KEEP = 40;
let nats: TestNats;
let tdb: TestDatabase;
let archiver: Stack;
let rig: TestStack;
let h: Harness;
let failNextArchiveRead = false;

beforeAll(async () => {
  // Large retention while filling, shrunk per test with keep() so that eviction is deterministic.
  rig = await stackForTest({
    topology: { streamEventKeep: 100_000 },
    skip: ["gateway", "stream", "command-worker", "approval-worker"],
    env: { LOG_LEVEL: "warn" },
  });
  ({ nats, database: tdb, stack: archiver } = rig);
  h = await startHarness({
    nats,
    db: tdb,
    // ARCHIVE_WAIT_MS: on a loaded machine the archiver (another process) can fall more than the
    // default 2 s behind the publisher; these tests are about replay and hand-over, which must
    // wait for it rather than end the stream with replay_gap (a failed proof still ends it: below).
    env: { ARCHIVE_REPLAY_BATCH_SIZE: "64", SSE_HEARTBEAT_MS: "60000", ARCHIVE_WAIT_MS: "15000" },
    wrapArchiveLog: (real: ArchiveLog): ArchiveLog => ({
      covers: real.covers,
      head: real.head,
      async after(t, pos, limit) {
        if (failNextArchiveRead) {
          failNextArchiveRead = false;
          return null;
        }
        return real.after(t, pos, limit);
      },
    }),
  });
});

afterAll(async () => {
  await h?.close();
  await rig?.close();
});

/** Sets NEXUS_REPORTS' per-tenant retention (shrinking it evicts at once). */
async function keep(n: number): Promise<void> {
  const info = await h.jsm.streams.info(STREAMS.reports);
  await h.jsm.streams.update(STREAMS.reports, { ...info.config, max_msgs_per_subject: n });
}

async function archivedThrough(t: Tenant, id: number, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      const r = await tdb.db
        .selectFrom("agent_report_chains")
        .select("last_report_id")
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .executeTakeFirst();
      return Number(r?.last_report_id ?? 0) >= id;
    },
    timeoutMs,
    `archived through ${id}`,
  );
}

const evicted = async (id: number) => (await h.jsm.streams.getMessage(STREAMS.reports, { seq: id })) === null;

describe("replay beyond retention", () => {
  it("a cursor older than JetStream's retention is replayed from the archive with the same ids and frames, then live", async () => {
    await keep(100_000);
    const t = uniqueTenant("arch");
    const ids = await publishMany(h.pub, t, 200);
    // Frames as JetStream serves them, captured while everything is still retained.
    const before = await h.open(t, { query: { cursor: "0" } });
    await before.waitFor(() => before.named("report").length >= 200, 10_000, "200 from JetStream");
    const jsFrames = new Map(before.named("report").map((e) => [e.id, e.raw]));
    before.close();
    await archivedThrough(t, ids.at(-1) as number);
    await keep(KEEP);
    const cursor = ids[10] as number;
    expect(await evicted(cursor)).toBe(true);

    const c = await h.open(t, { headers: { "last-event-id": String(cursor) } });
    await c.waitFor(() => c.named("report").length >= 189, 10_000, "replay");
    expect(c.named("snapshot")).toHaveLength(0);
    expect(c.named("error")).toHaveLength(0);
    const live = await publishMany(h.pub, t, 3, "live");
    await c.waitFor(() => c.named("report").length >= 192, 5000, "live");
    expect(reportIds(c)).toEqual([...ids.slice(11), ...live]);
    for (const e of c.named("report").slice(0, 189)) expect(e.raw).toBe(jsFrames.get(e.id));
    expect(await h.metric("nexus_sse_archive_replays_total")).toBeGreaterThanOrEqual(1);
    expect(await h.metric("nexus_sse_archive_reports_sent_total")).toBeGreaterThanOrEqual(150);
    c.close();
  });

  it("hands over from archive to JetStream to live while reports keep coming: no gap, no duplicate, ids strictly increase", async () => {
    await keep(100_000);
    const t = uniqueTenant("handover");
    const early = await publishMany(h.pub, t, 300, "early");
    await archivedThrough(t, early.at(-1) as number);
    await keep(KEEP);
    // A publisher that keeps going while clients join at archive cursors (the archiver keeps up).
    const published = [...early];
    let publishing = true;
    const pump = (async () => {
      for (let i = 0; publishing && i < 600; i++) {
        published.push(await publishReport(h.pub, t, `during${i}`));
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const replaysBefore = await h.metric("nexus_sse_archive_replays_total");
    const clients: { c: SseClient; cursor: number }[] = [];
    for (const k of [0, 50, 120, 250]) {
      const cursor = early[k] as number;
      clients.push({ c: await h.open(t, { headers: { "last-event-id": String(cursor) } }), cursor });
      await new Promise((r) => setTimeout(r, 40));
    }
    await pump;
    publishing = false;
    expect(await h.metric("nexus_sse_archive_replays_total")).toBe(replaysBefore + 4);
    const last = published.at(-1) as number;
    for (const { c: first, cursor } of clients) {
      // On a loaded machine the server may end a connection that fell behind (retention is 40
      // here: `replay_gap`, `hub_failed`, `slow`); the client resumes from its last id, as the
      // console does, and what it sees over all its connections must still be exact.
      const got: number[] = [];
      let c = first;
      for (let resumes = 0; ; resumes++) {
        try {
          await c.waitFor(() => reportIds(c).includes(last), 20_000, `up to ${last}`);
        } catch (err) {
          if (!c.closed || resumes >= 5) throw err;
        }
        got.push(...reportIds(c));
        expect(c.named("error")).toHaveLength(0);
        expect(c.named("snapshot")).toHaveLength(0);
        c.close();
        if (got.includes(last)) break;
        c = await h.open(t, { headers: { "last-event-id": String(got.at(-1) ?? cursor) } });
      }
      expect(strictlyIncreasing(got)).toBe(true);
      expect(got).toEqual(published.filter((x) => x > cursor));
    }
  });

  it("a client resuming 5,000 reports back sees every report exactly once", async () => {
    await keep(100_000);
    const t = uniqueTenant("deep");
    const ids: number[] = [];
    for (let i = 0; i < 5; i++)
      ids.push(...(await Promise.all(Array.from({ length: 1000 }, (_, j) => publishReport(h.pub, t, `d${i}-${j}`)))));
    ids.sort((a, b) => a - b);
    await archivedThrough(t, ids.at(-1) as number, 60_000);
    await keep(KEEP);
    const c = await h.open(t, { query: { cursor: String(ids[0]) } });
    await c.waitFor(() => c.named("report").length >= ids.length - 1, 30_000, "5,000 reports");
    expect(reportIds(c)).toEqual(ids.slice(1));
    c.close();
  });
});

describe("cursor rule with the archive", () => {
  it("CURSOR_EXPIRED for another tenant's archived id, an id beyond the newest, and after the archive's retention", async () => {
    await keep(100_000);
    const t = uniqueTenant("exp");
    const other = uniqueTenant("exp-other");
    const ids = await publishMany(h.pub, t, 60);
    const foreign = await publishMany(h.pub, other, 60);
    await archivedThrough(t, ids.at(-1) as number);
    await archivedThrough(other, foreign.at(-1) as number);
    await keep(KEEP);
    const expectExpired = async (c: SseClient) => {
      await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
      expect(ErrorEvent.parse(c.named("error")[0]?.data).error.code).toBe("CURSOR_EXPIRED");
      expect(c.named("report")).toHaveLength(0);
      c.close();
    };
    await expectExpired(await h.open(t, { headers: { "last-event-id": String(foreign[5]) } }));
    await expectExpired(await h.open(t, { headers: { "last-event-id": String((foreign.at(-1) as number) + 10_000) } }));
    // The same archived cursor is valid now and expired for a stream service 400 days later.
    const valid = await h.open(t, { headers: { "last-event-id": String(ids[5]) } });
    await valid.waitFor(() => valid.named("report").length >= 54, 5000, "valid archive cursor");
    valid.close();
    const later = await startHarness({ nats, db: tdb, now: () => new Date(Date.now() + 400 * 86_400_000) });
    try {
      await expectExpired(await later.open(t, { headers: { "last-event-id": String(ids[5]) } }));
    } finally {
      await later.close();
    }
  });

  it("when the archive's proof fails mid-replay the connection ends with replay_gap before anything after the gap", async () => {
    await keep(100_000);
    const t = uniqueTenant("gap");
    const ids = await publishMany(h.pub, t, 300);
    await archivedThrough(t, ids.at(-1) as number);
    await keep(KEEP);
    const gapsBefore = await h.metric('nexus_sse_disconnects_total{reason="replay_gap"}');
    failNextArchiveRead = true;
    const c = await h.open(t, { headers: { "last-event-id": String(ids[0]) } });
    await c.waitFor(() => c.closed, 5000, "closed");
    expect(reportIds(c)).toEqual([]);
    expect(await h.metric('nexus_sse_disconnects_total{reason="replay_gap"}')).toBe(gapsBefore + 1);
  });
});

describe("the archiver behind JetStream's retention (ARCHIVE_WAIT_MS)", () => {
  /**
   * Archives `first` (60 reports), stops the archiver, publishes `more` (30) and shrinks
   * retention to those 30: `first` is now only in the archive and `more` only in JetStream, so a
   * replay from inside `first` reaches a position that JetStream no longer holds and after which
   * the archive holds nothing yet.
   */
  async function archiverBehind(t: Tenant, retain = 30): Promise<{ first: number[]; more: number[] }> {
    await keep(100_000);
    const first = await publishMany(h.pub, t, 60);
    await archivedThrough(t, first.at(-1) as number);
    await archiver.stop("archiver");
    const more = await publishMany(h.pub, t, 30, "lag");
    await keep(retain);
    expect(await evicted(first.at(-1) as number)).toBe(true);
    expect(await evicted(more[30 - retain] as number)).toBe(false);
    return { first, more };
  }

  // The console's case: it fell more than STREAM_EVENT_KEEP behind in a burst and resumes at
  // once, from an id that JetStream has just dropped and the archiver holds but has not stored
  // yet (it lingers to batch: ARCHIVER_LINGER_MS, 8 s here instead of 100 ms, so that the
  // burst, the eviction and the 500 ms look below fit in it on a loaded machine).
  it("a resume cursor ahead of the archiver waits for it instead of expiring, then replays from the archive", async () => {
    const t = uniqueTenant("ahead");
    await keep(100_000);
    await archiver.stop("archiver");
    try {
      await archiver.start("archiver", { ARCHIVER_LINGER_MS: "8000" });
      const warm = await publishMany(h.pub, t, 5); // the archiver's run starts here, proven
      await archivedThrough(t, warm.at(-1) as number);
      const more = await publishMany(h.pub, t, 30, "burst");
      await keep(20); // more[0..9] leave JetStream; the archiver has them in its batch
      expect(await evicted(more[3] as number)).toBe(true);
      const c = await h.open(t, { headers: { "last-event-id": String(more[3]) } });
      await new Promise((r) => setTimeout(r, 500));
      expect(c.events).toHaveLength(0); // waiting: no error, no snapshot, no report yet
      expect(c.closed).toBe(false);
      await c.waitFor(() => c.named("report").length >= 26, 20_000, "the rest, once archived");
      expect(reportIds(c)).toEqual(more.slice(4));
      expect(c.named("error")).toHaveLength(0);
      expect(c.named("snapshot")).toHaveLength(0);
      c.close();
    } finally {
      await archiver.stop("archiver");
      await archiver.start("archiver");
    }
  });

  it("a resume cursor ahead of the archiver expires after ARCHIVE_WAIT_MS when the archiver does not come", async () => {
    const t = uniqueTenant("ahead-exp");
    // A 3 s wait, so that "waited for it" (≥ 2.9 s) and "at once" (< 2.5 s) stay apart on a loaded machine.
    const quick = await startHarness({ nats, db: tdb, env: { ARCHIVE_WAIT_MS: "3000", SSE_HEARTBEAT_MS: "60000" } });
    let stopped = false;
    try {
      const { more } = await archiverBehind(t, 20);
      stopped = true;
      const opened = Date.now();
      const c = await quick.open(t, { headers: { "last-event-id": String(more[3]) } });
      await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 10_000, "snapshot");
      expect(Date.now() - opened).toBeGreaterThanOrEqual(2900);
      expect(ErrorEvent.parse(c.named("error")[0]?.data).error.code).toBe("CURSOR_EXPIRED");
      expect(c.named("report")).toHaveLength(0);
      c.close();
      // A cursor beyond the tenant's newest report (here another tenant's id, for a tenant with
      // no reports) cannot become valid by waiting: it expires at once.
      const t0 = Date.now();
      const old = await quick.open(uniqueTenant("ahead-none"), { headers: { "last-event-id": String(more[3]) } });
      await old.waitFor((es) => es.some((e) => e.event === "snapshot"), 10_000, "snapshot");
      expect(Date.now() - t0).toBeLessThan(2500);
      old.close();
    } finally {
      await quick.close();
      if (stopped) await archiver.start("archiver");
    }
  });

  it("a replay that gets ahead of the archiver waits for it, then goes on without a gap or a duplicate", async () => {
    const t = uniqueTenant("lag");
    let stopped = false;
    try {
      const { first, more } = await archiverBehind(t);
      stopped = true;
      const c = await h.open(t, { headers: { "last-event-id": String(first[9]) } });
      await c.waitFor(() => c.named("report").length >= 50, 10_000, "the archived reports");
      // Nothing more can come while the archiver is down; the connection waits (ARCHIVE_WAIT_MS
      // is 15 s in this harness) instead of ending.
      await new Promise((r) => setTimeout(r, 700));
      expect(reportIds(c)).toEqual(first.slice(10));
      expect(c.closed).toBe(false);
      await archiver.start("archiver");
      stopped = false;
      await c.waitFor(() => c.named("report").length >= 80, 20_000, "the rest, once archived");
      const live = await publishMany(h.pub, t, 2, "live");
      await c.waitFor(() => c.named("report").length >= 82, 5000, "live");
      expect(reportIds(c)).toEqual([...first.slice(10), ...more, ...live]);
      expect(c.named("error")).toHaveLength(0);
      c.close();
    } finally {
      if (stopped) await archiver.start("archiver");
    }
  });

  it("ends the connection with replay_gap when the archiver does not catch up within ARCHIVE_WAIT_MS", async () => {
    const t = uniqueTenant("lag-gap");
    // A 3 s wait, so that "waited for it" (≥ 2.9 s) and "at once" (< 2.5 s) stay apart on a loaded machine.
    const quick = await startHarness({ nats, db: tdb, env: { ARCHIVE_WAIT_MS: "3000", SSE_HEARTBEAT_MS: "60000" } });
    let stopped = false;
    try {
      const { first } = await archiverBehind(t);
      stopped = true;
      const gapsBefore = await quick.metric('nexus_sse_disconnects_total{reason="replay_gap"}');
      const c = await quick.open(t, { headers: { "last-event-id": String(first[9]) } });
      await c.waitFor(() => c.named("report").length >= 50, 10_000, "the archived reports");
      const reached = Date.now();
      await c.waitFor(() => c.closed, 10_000, "closed");
      expect(Date.now() - reached).toBeGreaterThanOrEqual(700);
      // Everything the archive held, nothing after the gap; the client resumes from its last id.
      expect(reportIds(c)).toEqual(first.slice(10));
      expect(await quick.metric('nexus_sse_disconnects_total{reason="replay_gap"}')).toBe(gapsBefore + 1);
    } finally {
      await quick.close();
      if (stopped) await archiver.start("archiver");
    }
  });
});

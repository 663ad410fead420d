import { ErrorEvent } from "@nexus/contracts";
import { readSnapshot } from "@nexus/core";
import {
  createTestDatabase,
  natsForTest,
  type SseClient,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pickCursor } from "../src/cursor.ts";
import { type Harness, publishMany, publishReport, reportIds, startHarness } from "./helpers.ts";

const KEEP = 20;
let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;

beforeAll(async () => {
  nats = await natsForTest({ streamEventKeep: KEEP });
  tdb = await createTestDatabase();
  // A slow snapshot read (60 ms) and a fast heartbeat (20 ms): a ping must still never come
  // between the error and the snapshot.
  h = await startHarness({
    nats,
    db: tdb,
    env: { SSE_HEARTBEAT_MS: "20" },
    readSnapshot: async (db, t) => {
      await new Promise((r) => setTimeout(r, 60));
      return readSnapshot(db, t);
    },
  });
});

afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

/** The event names (pings left out) a client saw, in order. */
const names = (c: SseClient) => c.events.filter((e) => e.event !== "ping").map((e) => e.event);

/** Asserts: error CURSOR_EXPIRED (recoverable, no id), then a snapshot at `lastId`, then a live report. */
async function expectExpiredThenSnapshotThenLive(
  c: SseClient,
  t: { org_id: string; project_id: string },
  lastId: number,
) {
  await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
  const [err, snap] = c.events;
  expect(err?.event).toBe("error");
  expect(err?.id).toBeUndefined();
  const body = ErrorEvent.parse(err?.data);
  expect(body.error.code).toBe("CURSOR_EXPIRED");
  expect(body.error.recoverable).toBe(true);
  expect(snap?.event).toBe("snapshot");
  expect(snap?.id).toBe(String(lastId));
  const live = await publishReport(h.pub, t, "live");
  await c.waitFor(() => reportIds(c).includes(live), 5000, "live report");
  expect(reportIds(c)).toEqual([live]);
}

describe("cursor validity", () => {
  it("expired cursor (evicted by retention) → error CURSOR_EXPIRED, then snapshot, then live", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, KEEP + 10);
    const evicted = ids[3] as number;
    expect(await h.jsm.streams.getMessage("NEXUS_REPORTS", { seq: evicted })).toBeNull();
    const c = await h.open(t, { headers: { "last-event-id": String(evicted) } });
    await expectExpiredThenSnapshotThenLive(c, t, ids.at(-1) as number);
    c.close();
  });

  it("the oldest retained report is still a valid cursor", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, KEEP + 5);
    const oldest = ids[5] as number; // ids[0..4] were evicted, ids[5] is the first retained
    const c = await h.open(t, { headers: { "last-event-id": String(oldest) } });
    await c.waitFor(() => c.named("report").length >= KEEP - 1, 5000, "replay");
    expect(names(c)[0]).toBe("report");
    expect(reportIds(c)).toEqual(ids.slice(6));
    c.close();
  });

  it("cursor 0 after the tenant lost reports to retention is expired", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, KEEP + 1);
    const c = await h.open(t, { query: { cursor: "0" } });
    await expectExpiredThenSnapshotThenLive(c, t, ids.at(-1) as number);
    c.close();
  });

  it("cursor newer than the newest report (stream reset) → CURSOR_EXPIRED, then snapshot", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, 3);
    const c = await h.open(t, { headers: { "last-event-id": String((ids.at(-1) as number) + 1000) } });
    await expectExpiredThenSnapshotThenLive(c, t, ids.at(-1) as number);
    c.close();
  });

  it.each(["abc", "-1", "01", "1.5", "99999999999999999999"])(
    "invalid cursor %j → CURSOR_EXPIRED, then snapshot",
    async (bad) => {
      const t = uniqueTenant();
      const ids = await publishMany(h.pub, t, 2);
      const c = await h.open(t, { headers: { "last-event-id": bad } });
      await expectExpiredThenSnapshotThenLive(c, t, ids.at(-1) as number);
      c.close();
    },
  );

  it("another tenant's cursor behaves exactly like a nonexistent one (no leak)", async () => {
    const a = uniqueTenant("own");
    const b = uniqueTenant("other");
    const aIds = await publishMany(h.pub, a, 2);
    const bIds = await publishMany(h.pub, b, 5, "secret");
    const foreign = bIds[1] as number; // exists, but on b's subject
    const missing = (bIds.at(-1) as number) + 500;

    const viaForeign = await h.open(a, { headers: { "last-event-id": String(foreign) } });
    await expectExpiredThenSnapshotThenLive(viaForeign, a, aIds.at(-1) as number);
    viaForeign.close();
    const viaMissing = await h.open(a, { headers: { "last-event-id": String(missing) } });
    await viaMissing.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    expect(names(viaMissing).slice(0, 2)).toEqual(names(viaForeign).slice(0, 2));
    const errorOf = (c: SseClient) => ({ ...c.named("error")[0]?.data, ts: undefined });
    expect(errorOf(viaForeign)).toEqual(errorOf(viaMissing));
    // nothing of b's appears on a's connection
    expect(viaForeign.reports().some((r) => r.tenant.org_id === b.org_id)).toBe(false);
    expect(JSON.stringify(viaForeign.events)).not.toContain("secret");
    viaMissing.close();
  });
});

describe("pickCursor", () => {
  it("prefers Last-Event-ID over ?cursor= and treats empty values as absent", () => {
    expect(pickCursor("7", "3")).toBe("7");
    expect(pickCursor(undefined, "3")).toBe("3");
    expect(pickCursor("", "3")).toBe("3");
    expect(pickCursor(undefined, ["4", "5"])).toBe("4");
    expect(pickCursor(undefined, "")).toBeUndefined();
    expect(pickCursor(undefined, undefined)).toBeUndefined();
    expect(pickCursor("abc", undefined)).toBe("abc");
  });
});

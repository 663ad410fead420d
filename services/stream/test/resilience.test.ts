import type { ErrorEvent } from "@nexus/contracts";
import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, publishMany, publishReport, reportIds, startHarness } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;
/** When true, the report log says every cursor lost reports to retention. */
let refuseCoverage = false;
/** When true, reading a tenant's last report sequence fails as if JetStream were down. */
let failReads = false;
/** Per-call override of `covers` (undefined = ask JetStream). */
let coveragePolicy: ((cursor: number) => boolean | undefined) | undefined;

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
  h = await startHarness({
    nats,
    db: tdb,
    wrapReportLog: (real) => ({
      lastSeq: async (t) => {
        if (failReads) throw new Error("JetStream unavailable (simulated)");
        return real.lastSeq(t);
      },
      covers: async (t, c) => (refuseCoverage ? false : (coveragePolicy?.(c) ?? real.covers(t, c))),
    }),
  });
});

afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

/** Reader restarts of every hub so far, whatever the reason. */
async function hubRestarts(): Promise<number> {
  const text = await (await fetch(`${h.baseUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("nexus_sse_hub_restarts_total{"))
    .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
}

describe("resilience", () => {
  it("a hub never delivers across a gap it cannot rule out: it fails and the client resumes from its last id", async () => {
    const t = uniqueTenant("gap");
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    await waitFor(() => h.app.reportStream.hubListenerCount(t) === 1, 5000, "attached");
    const snapId = Number(c.named("snapshot")[0]?.id);
    // The hub's first delivery comes from a fresh server-side consumer, so the hub must prove
    // that nothing after its start was dropped before delivering it. Make the proof fail.
    refuseCoverage = true;
    let id: number;
    try {
      id = await publishReport(h.pub, t, "unproven");
      await waitFor(() => c.closed, 5000, "connection ended by the failed hub");
    } finally {
      refuseCoverage = false;
    }
    expect(c.named("report")).toHaveLength(0);
    expect(await h.metric('nexus_sse_disconnects_total{reason="hub_failed"}')).toBe(1);
    const resumed = await h.open(t, { headers: { "last-event-id": String(snapId) } });
    await resumed.waitFor(() => reportIds(resumed).includes(id), 5000, "report after resume");
    expect(reportIds(resumed)).toEqual([id]);
    resumed.close();
  });

  it("a replay never writes past a gap it cannot rule out: it ends and the client resumes from its last id", async () => {
    const t = uniqueTenant("rgap");
    const ids = await publishMany(h.pub, t, 10);
    const keeper = await h.open(t); // starts the hub at the newest report, so older cursors replay
    await keeper.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    const cursor = ids[2] as number;
    let calls = 0;
    // The cursor is valid when the connection starts; by the time the replay's first pull is
    // read, retention (simulated) has dropped it, so the pull may have skipped reports.
    coveragePolicy = (c) => (c === cursor ? ++calls === 1 : undefined);
    try {
      const c = await h.open(t, { headers: { "last-event-id": String(cursor) } });
      await waitFor(() => c.closed, 5000, "connection ended");
      expect(c.named("report")).toHaveLength(0);
      expect(calls).toBe(2);
    } finally {
      coveragePolicy = undefined;
    }
    expect(await h.metric('nexus_sse_disconnects_total{reason="replay_gap"}')).toBe(1);
    keeper.close();
  });

  it("JetStream unavailable while a connection starts → error DEPENDENCY_UNAVAILABLE, then the stream ends (EventSource retries)", async () => {
    const t = uniqueTenant("down");
    failReads = true;
    try {
      const c = await h.open(t);
      expect(c.status).toBe(200);
      await waitFor(() => c.closed, 5000, "stream ended");
      const evs = c.events.filter((e) => e.event !== "ping");
      expect(evs.map((e) => e.event)).toEqual(["error"]);
      expect(evs[0]?.id).toBeUndefined();
      expect((evs[0]?.data as ErrorEvent | undefined)?.error.code).toBe("DEPENDENCY_UNAVAILABLE");
      expect((evs[0]?.data as ErrorEvent | undefined)?.error.recoverable).toBe(true);
    } finally {
      failReads = false;
    }
    expect(h.app.reportStream.hasHub(t)).toBe(false);
    const again = await h.open(t);
    await again.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot once JetStream answers");
    again.close();
  });

  it("a NATS server restart loses nothing on a live connection, and reports after it arrive within seconds", async (ctx) => {
    if (!nats.own) ctx.skip("needs a nats-server of this file's own");
    const t = uniqueTenant("restart");
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    const before = await publishMany(h.pub, t, 5, "before");
    await c.waitFor(() => c.named("report").length === 5, 5000, "before restart");
    await nats.restart();
    const after: number[] = [];
    await waitFor(
      async () => {
        after.push(await publishReport(h.pub, t, "after"));
        return true;
      },
      15_000,
      "publishing after the restart",
    );
    after.push(...(await publishMany(h.pub, t, 4, "after")));
    // The hub restarts its reader on the reconnect (nats.js alone would retry after 15–45 s).
    // Typically well under a second; 10 s leaves room for a loaded machine (the chaos suite
    // measures the bound of 5 s under load).
    await c.waitFor(() => reportIds(c).includes(after.at(-1) as number), 10_000, "reports after the restart");
    expect(reportIds(c)).toEqual([...before, ...after]);
    // Restarted on the reconnect, or — when JetStream noticed first — on missed heartbeats.
    expect(await hubRestarts()).toBeGreaterThanOrEqual(1);
    c.close();
  });

  it("a hub whose JetStream consumer is deleted on the server resumes from its last report within seconds, without a gap", async () => {
    const t = uniqueTenant("lost");
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    await waitFor(() => h.app.reportStream.hubListenerCount(t) === 1, 5000, "attached");
    const before = await publishMany(h.pub, t, 3, "before");
    await c.waitFor(() => reportIds(c).length === 3, 5000, "before");
    const restartsBefore = await hubRestarts();
    // The hub's ordered consumer is the one consumer filtered on the tenant's subject.
    const subject = `nexus.report.${t.org_id}.${t.project_id}`;
    let deleted = 0;
    for await (const ci of h.jsm.consumers.list("NEXUS_REPORTS"))
      if (ci.config.filter_subject === subject) {
        await h.jsm.consumers.delete("NEXUS_REPORTS", ci.name);
        deleted++;
      }
    expect(deleted).toBe(1);
    const after = await publishMany(h.pub, t, 3, "after");
    await c.waitFor(() => reportIds(c).includes(after.at(-1) as number), 5000, "reports after the deletion");
    expect(reportIds(c)).toEqual([...before, ...after]);
    expect(await hubRestarts()).toBeGreaterThan(restartsBefore);
    c.close();
  });
});

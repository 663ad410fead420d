/**
 * A hub whose running JetStream consumer falls so far behind its tenant that per-tenant
 * retention evicts reports before they are sent (docs/architecture.md invariant 5). JetStream
 * then moves the consumer on to the next retained report without a sign; the hub must notice
 * and end its connections (they resume from their last id) rather than skip reports.
 *
 * Deterministic: once the hub's consumer is running, the test process — the stream service
 * runs in it — is blocked in `execFileSync` while another process publishes 400 reports with
 * retention at 10 per tenant. The hub's outstanding pull takes about the first 256; the rest
 * are stored while nobody pulls, and all but the newest 10 are evicted before the hub asks
 * again. Its consumer is not new, so only the retention check of a running consumer can tell.
 * A hub less far behind — past half the limit, with its own server at a limit of 1,000 — proves
 * too (JetStream's pending count is not exact while reports are stored and evicted) and, when
 * nothing was evicted, delivers everything.
 */
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { createTestDatabase, natsForTest, type TestDatabase, type TestNats, uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, publishMany, reportIds, startHarness } from "./helpers.ts";

const KEEP = 10;
let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;
const burstScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "publish-burst.ts");

/**
 * Publishes `count` reports for `t` from another process (fixtures/publish-burst.ts) while this
 * one — and the stream service in it — is blocked; returns their report_ids in order.
 */
function publishBurst(natsUrl: string, t: Tenant, count: number): number[] {
  const out = execFileSync(process.execPath, [burstScript, natsUrl, t.org_id, t.project_id, String(count)], {
    encoding: "utf8",
    timeout: 60_000,
  });
  return JSON.parse(out) as number[];
}

beforeAll(async () => {
  nats = await natsForTest({ streamEventKeep: KEEP });
  tdb = await createTestDatabase();
  // Heartbeats and probes far apart: the hub's own watchdog must not be what notices.
  h = await startHarness({
    nats,
    db: tdb,
    env: { HUB_HEARTBEAT_MS: "30000", HUB_PROBE_MS: "600000", SSE_HEARTBEAT_MS: "60000", ARCHIVE_REPLAY: "false" },
  });
});
afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

/**
 * Opens a stream for `t` on `harness` and waits for its snapshot, then publishes `n` reports and
 * waits until all were delivered: the hub's consumer is running before the burst.
 * @returns the client and the ids of those first reports.
 */
async function openWithReports(harness: Harness, t: Tenant, n: number) {
  const c = await harness.open(t);
  await c.waitFor((ev) => ev.some((e) => e.event === "snapshot"), 5000, "snapshot");
  const before = await publishMany(harness.pub, t, n, "before");
  await c.waitFor(() => reportIds(c).length === n, 5000, `the first ${n}`);
  return { c, before };
}

describe("a hub overtaken by retention", () => {
  it("ends its connections instead of skipping the reports retention took before they were sent", async () => {
    const t = uniqueTenant("overtaken");
    const { c, before } = await openWithReports(h, t, 5);
    const published = publishBurst(nats.url, t, 400);
    expect(published).toHaveLength(400);
    await c.waitFor(() => c.closed || reportIds(c).at(-1) === published.at(-1), 10_000, "closed or caught up");
    const got = reportIds(c);
    const all = [...before, ...published];
    // Whatever arrived is a gap-free prefix of what was published: nothing skipped.
    expect(got).toEqual(all.slice(0, got.length));
    // And since retention did take reports the hub never had, it had to end the connection.
    expect(c.closed).toBe(true);
    expect(got.length).toBeLessThan(all.length);
    expect(await h.metric('nexus_sse_disconnects_total{reason="hub_failed"}')).toBeGreaterThanOrEqual(1);
    expect(await h.metric('nexus_sse_hub_proofs_total{outcome="lost"}')).toBeGreaterThanOrEqual(1);
  });
});

describe("a hub behind by more than half the retention, not overtaken", () => {
  // JetStream's pending count is not exact while reports are stored and evicted, so the hub
  // proves from half the limit on (hub.ts, OVERTAKABLE_SHARE). Where the proof holds — nothing
  // was evicted — every report arrives and the connection stays open.
  //
  // Deterministic: the hub's outstanding pull holds at most 256 reports (hub.ts), so of a burst
  // of 900 published while this process is blocked, at least 644 are stored while nobody pulls.
  // When the hub pulls again, the first of them have 500 or more pending after them: at least
  // 144 reports at or above half the limit of 1,000, none evicted.
  const LIMIT = 1000;
  const BURST = 900;
  let nats2: TestNats;
  let h2: Harness;
  beforeAll(async () => {
    nats2 = await natsForTest({ streamEventKeep: LIMIT });
    h2 = await startHarness({
      nats: nats2,
      db: tdb,
      env: { HUB_HEARTBEAT_MS: "30000", HUB_PROBE_MS: "600000", SSE_HEARTBEAT_MS: "60000", ARCHIVE_REPLAY: "false" },
    });
  });
  afterAll(async () => {
    await h2?.close();
    await nats2?.stop();
  });

  it("proves, delivers every report and stays open", async () => {
    const t = uniqueTenant("behind");
    const { c, before } = await openWithReports(h2, t, 2);
    const proofs = () => h2.metric('nexus_sse_hub_proofs_total{outcome="ok"}');
    const proofsBefore = await proofs();
    const published = publishBurst(nats2.url, t, BURST);
    await c.waitFor(() => c.closed || reportIds(c).length === before.length + BURST, 20_000, "all or closed");
    expect(c.closed).toBe(false);
    expect(reportIds(c)).toEqual([...before, ...published]);
    expect(await h2.metric('nexus_sse_disconnects_total{reason="hub_failed"}')).toBe(0);
    // The proof did run, and one proof releases every report received before it was asked
    // for: a few proofs for the burst, where one per report at or above half the limit would
    // be at least 144.
    // (This server's hubs serve only this test; operators see the same metric.)
    const asked = (await proofs()) - proofsBefore;
    expect(asked).toBeGreaterThanOrEqual(1);
    expect(asked).toBeLessThanOrEqual(20);
    expect(await h2.metric('nexus_sse_hub_proofs_total{outcome="lost"}')).toBe(0);
    expect(await h2.metric('nexus_sse_hub_proofs_total{outcome="unanswered"}')).toBe(0);
    c.close();
  });
});

describe("a hub at a tenant purge", () => {
  // A tenant quiet before its purge: the hub's last report is W, which the purge erases, and its
  // first delivery is `tenant.purged`. The usual proof (W still retained) cannot hold; the hub
  // proves instead that nothing after the purge was evicted, and every screen gets the report.
  it("delivers tenant.purged to a hub whose last report the purge erased", async () => {
    const t = uniqueTenant("purged");
    const ids = await publishMany(h.pub, t, 3, "before");
    const w = ids.at(-1) as number;
    const c = await h.open(t);
    await c.waitFor((ev) => ev.some((e) => e.event === "snapshot"), 5000, "snapshot");
    expect(Number(c.named("snapshot")[0]?.id)).toBe(w);
    // What the gateway's purge does to JetStream, then its report.
    await h.jsm.streams.purge(STREAMS.reports, { filter: subjects.report(t), seq: w + 1 });
    const purged = Number(
      await h.pub.publish({
        tenant: t,
        entityId: "tenant",
        step: `purged.${w}`,
        report: {
          type: "tenant.purged",
          status: "done",
          title: "Tenant data erased",
          summary: `Every report up to ${w} was erased.`,
          purge: { reports_through: String(w), purged_by: "admin", counts: {} },
        },
        causality: { correlation_id: "c-purge" },
        ts: new Date().toISOString(),
      }),
    );
    await c.waitFor(() => c.closed || reportIds(c).includes(purged), 5000, "tenant.purged or closed");
    expect(c.named("error")).toHaveLength(0);
    expect(c.closed).toBe(false);
    expect(reportIds(c)).toEqual([purged]);
    expect(c.named("report")[0]?.data.report.type).toBe("tenant.purged");
    c.close();
  });
});

import { SnapshotEvent, subjects, type Tenant } from "@nexus/contracts";
import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, publishMany, publishReport, reportIds, startHarness, strictlyIncreasing } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
  h = await startHarness({ nats, db: tdb, env: { SSE_HEARTBEAT_MS: "100" } });
});

afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

describe("GET /agent/reports/stream", () => {
  it("snapshot first, then live reports in order", async () => {
    const t = uniqueTenant();
    const before = await publishMany(h.pub, t, 3, "before");
    const c = await h.open(t);
    expect(c.status).toBe(200);
    expect(c.contentType).toMatch(/^text\/event-stream/);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    expect(c.retry).toBe(3000);
    const first = c.events[0];
    expect(first?.event).toBe("snapshot");
    // the snapshot stands for the tenant's newest report
    expect(first?.id).toBe(String(before[2]));
    const snap = SnapshotEvent.parse(first?.data);
    expect(snap.report_id).toBe(String(before[2]));
    expect(snap.tenant).toEqual(t);
    expect(snap.snapshot.autopilot).toEqual({ status: "idle", in_flight: 0 });

    const live = await publishMany(h.pub, t, 5, "live");
    await c.waitFor(() => c.named("report").length >= 5, 5000, "5 live reports");
    expect(reportIds(c)).toEqual(live);
    const data = c.reports();
    expect(data.map((d) => d.report_id)).toEqual(live.map(String));
    expect(data[0]!.tenant).toEqual(t);
    expect(data[0]!.report.type).toBe("command.progress");
    // no report at or below the snapshot's id on this connection
    expect(reportIds(c).every((id) => id > (before[2] as number))).toBe(true);
    c.close();
  });

  it("a tenant without reports gets snapshot id 0", async () => {
    const t = uniqueTenant();
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    expect(c.named("snapshot")[0]?.id).toBe("0");
    const id = await publishReport(h.pub, t);
    await c.waitFor(() => reportIds(c).includes(id), 5000, "first report");
    c.close();
  });

  it("report_id strictly increases with many reports published concurrently from several tenants", async () => {
    const tenants = Array.from({ length: 5 }, () => uniqueTenant("conc"));
    // Two connections per tenant before the burst, one joining by cursor in the middle.
    const early = await Promise.all(tenants.flatMap((t) => [h.open(t), h.open(t)]));
    await Promise.all(early.map((c) => c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot")));
    const published = new Map<string, number[]>(tenants.map((t) => [t.org_id, []]));
    const burst = async (t: Tenant, n: number) => {
      const ids = await Promise.all(Array.from({ length: n }, (_, i) => publishReport(h.pub, t, `b${i}`)));
      published.get(t.org_id)?.push(...ids);
    };
    await Promise.all(tenants.map((t) => burst(t, 40)));
    const t0 = tenants[0] as Tenant;
    const cursor = Math.min(...(published.get(t0.org_id) ?? []));
    const late = await h.open(t0, { headers: { "last-event-id": String(cursor) } });
    await Promise.all(tenants.map((t) => burst(t, 40)));

    for (const [i, c] of early.entries()) {
      const t = tenants[Math.floor(i / 2)] as Tenant;
      const expected = [...(published.get(t.org_id) ?? [])].sort((a, b) => a - b);
      await c.waitFor(() => c.named("report").length >= expected.length, 10_000, "all reports");
      const ids = reportIds(c);
      expect(strictlyIncreasing(ids)).toBe(true);
      expect(ids).toEqual(expected);
    }
    const expectedLate = [...(published.get(t0.org_id) ?? [])].sort((a, b) => a - b).filter((x) => x > cursor);
    await late.waitFor(() => late.named("report").length >= expectedLate.length, 10_000, "late reports");
    expect(reportIds(late)).toEqual(expectedLate);
    expect(late.named("snapshot")).toHaveLength(0);
    for (const c of [...early, late]) c.close();
  });

  it("replay from Last-Event-ID is gap-free and duplicate-free, then live", async () => {
    const t = uniqueTenant();
    const other = uniqueTenant();
    const ids: number[] = [];
    for (let i = 0; i < 20; i++) {
      ids.push(await publishReport(h.pub, t, `r${i}`));
      await publishReport(h.pub, other, `o${i}`); // interleaved: report_ids are not contiguous
    }
    const cursor = ids[6] as number;
    const c = await h.open(t, { headers: { "last-event-id": String(cursor) } });
    await c.waitFor(() => c.named("report").length >= 13, 5000, "replay");
    expect(c.named("snapshot")).toHaveLength(0);
    expect(c.named("error")).toHaveLength(0);
    const live = await publishMany(h.pub, t, 3, "live");
    await c.waitFor(() => c.named("report").length >= 16, 5000, "live");
    expect(reportIds(c)).toEqual([...ids.slice(7), ...live]);
    c.close();
  });

  it("replay from ?cursor= is gap-free and duplicate-free", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, 10);
    const c = await h.open(t, { query: { cursor: String(ids[3]) } });
    await c.waitFor(() => c.named("report").length >= 6, 5000, "replay");
    expect(reportIds(c)).toEqual(ids.slice(4));
    expect(c.named("snapshot")).toHaveLength(0);
    c.close();
  });

  it("cursor 0 replays everything while the tenant has lost nothing", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, 4);
    const c = await h.open(t, { query: { cursor: "0" } });
    await c.waitFor(() => c.named("report").length >= 4, 5000, "replay");
    expect(reportIds(c)).toEqual(ids);
    expect(c.named("snapshot")).toHaveLength(0);
    c.close();
  });

  it("Last-Event-ID header wins over ?cursor=", async () => {
    const t = uniqueTenant();
    const ids = await publishMany(h.pub, t, 10);
    const c = await h.open(t, { headers: { "last-event-id": String(ids[7]) }, query: { cursor: String(ids[1]) } });
    await c.waitFor(() => c.named("report").length >= 2, 5000, "replay");
    await new Promise((r) => setTimeout(r, 200));
    expect(reportIds(c)).toEqual(ids.slice(8));
    c.close();
  });

  it("ping has no id", async () => {
    const t = uniqueTenant();
    const c = await h.open(t);
    await publishReport(h.pub, t);
    await c.waitFor(() => c.named("ping").length >= 3, 5000, "3 pings");
    for (const p of c.named("ping")) {
      expect(p.id).toBeUndefined();
      expect(typeof p.data.ts).toBe("string");
      expect(Number.isNaN(Date.parse(p.data.ts))).toBe(false);
    }
    c.close();
  });

  it("tenant isolation: a connection never receives another tenant's reports", async () => {
    const a = uniqueTenant("iso");
    const b = uniqueTenant("iso");
    const ca = await h.open(a);
    const cb = await h.open(b);
    await Promise.all([ca, cb].map((c) => c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot")));
    const bIds = await publishMany(h.pub, b, 5, "b");
    const aIds = await publishMany(h.pub, a, 2, "a");
    await ca.waitFor(() => ca.named("report").length >= 2, 5000, "a's reports");
    await cb.waitFor(() => cb.named("report").length >= 5, 5000, "b's reports");
    await new Promise((r) => setTimeout(r, 200));
    expect(reportIds(ca)).toEqual(aIds);
    expect(reportIds(cb)).toEqual(bIds);
    expect(ca.reports().every((r) => r.tenant.org_id === a.org_id && r.tenant.project_id === a.project_id)).toBe(true);
    ca.close();
    cb.close();
  });

  it("a report whose payload names another tenant is not shown on the subject's stream", async () => {
    const a = uniqueTenant("forge");
    const b = uniqueTenant("forge");
    const c = await h.open(a);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    // b's payload published on a's subject (a buggy publisher) must not reach a.
    const forged = {
      report: { type: "command.started", status: "running", title: "forged" },
      causality: { correlation_id: "x" },
      tenant: b,
      ts: new Date().toISOString(),
    };
    await h.js.publish(subjects.report(a), JSON.stringify(forged));
    const ok = await publishReport(h.pub, a, "after");
    await c.waitFor(() => reportIds(c).includes(ok), 5000, "next report");
    expect(reportIds(c)).toEqual([ok]);
    c.close();
  });

  it.each([
    ["a.b", "p"],
    ["*", "p"],
    [">", "p"],
    ["a b", "p"],
    ["", "p"],
    ["ok", "x".repeat(65)],
  ])("crafted tenant %j / %j → 400 INVALID_TENANT", async (org, project) => {
    const viaHeaders = await fetch(`${h.baseUrl}/agent/reports/stream`, {
      headers: { "x-org-id": org, "x-project-id": project },
    });
    expect(viaHeaders.status).toBe(400);
    const body = await viaHeaders.json();
    expect(body.error.code).toBe("INVALID_TENANT");
    expect(body.error.recoverable).toBe(false);
    expect(typeof body.error.message).toBe("string");

    const viaQuery = await fetch(h.streamUrl({ org_id: org, project_id: project }));
    expect(viaQuery.status).toBe(400);
    expect((await viaQuery.json()).error.code).toBe("INVALID_TENANT");
  });

  it("a missing tenant is 400 INVALID_TENANT", async () => {
    const r = await fetch(`${h.baseUrl}/agent/reports/stream`);
    expect(r.status).toBe(400);
    expect((await r.json()).error.code).toBe("INVALID_TENANT");
  });

  it("the tenant may come from the query string (EventSource)", async () => {
    const t = uniqueTenant();
    const id = await publishReport(h.pub, t);
    const r = await fetch(h.streamUrl(t), { headers: { accept: "text/event-stream" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("no-cache");
    expect(r.headers.get("x-accel-buffering")).toBe("no");
    const reader = r.body!.getReader();
    let text = "";
    while (!text.includes("event: snapshot")) text += new TextDecoder().decode((await reader.read()).value);
    expect(text.startsWith("retry: 3000\n\n")).toBe(true);
    expect(text).toContain(`event: snapshot\nid: ${id}\n`);
    await reader.cancel();
  });

  it("/health, /ready and /metrics answer", async () => {
    expect((await fetch(`${h.baseUrl}/health`)).status).toBe(200);
    expect((await fetch(`${h.baseUrl}/ready`)).status).toBe(200);
    const m = await (await fetch(`${h.baseUrl}/metrics`)).text();
    expect(m).toContain("nexus_sse_connections");
    expect(m).toContain("nexus_sse_reports_sent_total");
    expect(m).toContain("nexus_sse_hubs");
  });

  it("a closed connection leaves its hub, which stops when idle and deletes its consumer", async () => {
    const t = uniqueTenant();
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    await waitFor(() => h.app.reportStream.hubListenerCount(t) === 1, 5000, "listener attached");
    expect(h.app.reportStream.hasHub(t)).toBe(true);
    const consumersOf = async () =>
      (await h.jsm.consumers.list("NEXUS_REPORTS").next()).filter(
        (ci) => ci.config.filter_subject === subjects.report(t),
      );
    expect(await consumersOf()).toHaveLength(1);
    c.close();
    await waitFor(() => h.app.reportStream.hubListenerCount(t) === 0, 5000, "listener removed");
    // HUB_IDLE_MS is 200 in the harness
    await waitFor(() => !h.app.reportStream.hasHub(t), 5000, "the tenant's hub stopped");
    await waitFor(async () => (await consumersOf()).length === 0, 5000, "its ordered consumer deleted");
  });
});

/**
 * Live progress (`event: progress`): from the core NATS subject `nexus.progress.<org>.<project>`
 * to the tenant's live connections, without an id, never stored, never replayed, never moving a
 * client's Last-Event-ID, never crossing tenants.
 */
import { ProgressEvent, subjects, type Tenant } from "@nexus/contracts";
import {
  createTestDatabase,
  natsForTest,
  type SseClient,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, publishReport, reportIds, startHarness } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
  h = await startHarness({ nats, db: tdb });
});

afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

function progress(t: Tenant, commandId: string, stage: string, text?: string): ProgressEvent {
  return {
    progress: { command_id: commandId, stage, ...(text ? { text_delta: text } : {}) },
    causality: { correlation_id: `c-${commandId}`, command_id: commandId },
    tenant: t,
    ts: new Date().toISOString(),
  };
}

function publishProgress(t: Tenant, ev: ProgressEvent | unknown, subjectTenant: Tenant = t): void {
  h.nc.publish(subjects.progress(subjectTenant), JSON.stringify(ev));
}

/** The Last-Event-ID an EventSource would hold: the id of the last event that had one. */
function lastEventId(c: SseClient): string | undefined {
  return c.events.filter((e) => e.id !== undefined).at(-1)?.id;
}

async function liveClient(t: Tenant): Promise<SseClient> {
  const c = await h.open(t);
  await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
  return c;
}

describe("event: progress", () => {
  it("reaches a live client without an id and without moving its cursor; reports keep their ids", async () => {
    const t = uniqueTenant("prog");
    const c = await liveClient(t);
    const r1 = await publishReport(h.pub, t, "one");
    await c.waitFor(() => c.named("report").length === 1, 5000, "report 1");
    const cursor = lastEventId(c);
    expect(cursor).toBe(String(r1));

    publishProgress(t, progress(t, "cmd-1", "drafting", "안녕하세요, "));
    publishProgress(t, progress(t, "cmd-1", "drafting", "Kim님."));
    await c.waitFor(() => c.named("progress").length === 2, 5000, "two progress events");
    const frames = c.named("progress");
    for (const f of frames) expect(f.id).toBeUndefined();
    expect(frames.map((f) => ProgressEvent.parse(f.data).progress.text_delta).join("")).toBe("안녕하세요, Kim님.");
    expect(frames[0]?.data).toMatchObject({
      progress: { command_id: "cmd-1", stage: "drafting", text_delta: "안녕하세요, " },
      causality: { correlation_id: "c-cmd-1", command_id: "cmd-1" },
      tenant: t,
    });
    expect(lastEventId(c)).toBe(cursor);

    const r2 = await publishReport(h.pub, t, "two");
    await c.waitFor(() => c.named("report").length === 2, 5000, "report 2");
    expect(reportIds(c)).toEqual([r1, r2]);
    expect(await h.metric("nexus_sse_progress_sent_total")).toBeGreaterThanOrEqual(2);
    c.close();
  });

  it("is never replayed: a client resuming from a cursor gets the reports after it and no earlier progress", async () => {
    const t = uniqueTenant("norep");
    const first = await liveClient(t);
    const r1 = await publishReport(h.pub, t, "a");
    publishProgress(t, progress(t, "cmd-2", "map"));
    const r2 = await publishReport(h.pub, t, "b");
    await first.waitFor(() => first.named("report").length === 2, 5000, "two reports");
    await first.waitFor(() => first.named("progress").length === 1, 5000, "progress");
    first.close();

    const resumed = await h.open(t, { headers: { "last-event-id": String(r1) } });
    await resumed.waitFor(() => resumed.named("report").length === 1, 5000, "replayed report");
    expect(reportIds(resumed)).toEqual([r2]);
    // Still live afterwards: new progress arrives, the old one never did.
    publishProgress(t, progress(t, "cmd-2", "reduce"));
    await resumed.waitFor(() => resumed.named("progress").length === 1, 5000, "new progress");
    expect(resumed.named("progress").map((e) => e.data.progress.stage)).toEqual(["reduce"]);
    resumed.close();
  });

  it("never crosses tenants: another tenant's subject, or a payload naming another tenant, is not forwarded", async () => {
    const t = uniqueTenant("mine");
    const other = uniqueTenant("other");
    const c = await liveClient(t);
    publishProgress(other, progress(other, "cmd-x", "drafting", "secret"));
    publishProgress(t, progress(other, "cmd-y", "drafting", "forged"));
    publishProgress(t, { progress: { stage: "no command id" }, tenant: t });
    publishProgress(t, "not json at all");
    publishProgress(t, progress(t, "cmd-z", "drafting", "mine"));
    await c.waitFor(() => c.named("progress").length >= 1, 5000, "own progress");
    await new Promise((r) => setTimeout(r, 200));
    expect(c.named("progress").map((e) => e.data.progress.text_delta)).toEqual(["mine"]);
    c.close();
  });

  it("is forwarded by one core subscription per tenant hub to every live connection of the tenant", async () => {
    const t = uniqueTenant("fan");
    const a = await liveClient(t);
    const b = await liveClient(t);
    expect(h.app.reportStream.hubListenerCount(t)).toBe(2);
    publishProgress(t, progress(t, "cmd-f", "ranking"));
    await a.waitFor(() => a.named("progress").length === 1, 5000, "a");
    await b.waitFor(() => b.named("progress").length === 1, 5000, "b");
    a.close();
    b.close();
  });
});

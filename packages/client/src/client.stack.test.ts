/**
 * The SDK against the real stack: the four services as separate processes on their own NATS
 * server and database, exactly as the end-to-end tests start them.
 */
import type { ReportEvent, Tenant } from "@nexus/contracts";
import { type Stack, stackForTest, type TestStack, uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Following, type NexusClient } from "./client.ts";
import { isNexusApiError, type NexusApiError } from "./errors.ts";
import { compareReportIds } from "./reports.ts";
import type { StreamEvent } from "./stream.ts";

let rig: TestStack;
let stack: Stack;
const opened: Following[] = [];

beforeAll(async () => {
  rig = await stackForTest({ env: { SSE_HEARTBEAT_MS: "500" } });
  stack = rig.stack;
});
afterAll(async () => {
  for (const f of opened) f.close();
  await rig?.close();
});

function clientFor(t: Tenant, extra: { fetch?: typeof fetch } = {}): NexusClient {
  return createClient({ baseUrl: stack.gatewayUrl, auth: { mode: "headers", tenant: t }, ...extra });
}

/** Follows `t`'s state and waits for the first snapshot (so later reports are not folded into it). */
async function follow(c: NexusClient, o: Parameters<NexusClient["follow"]>[0] = {}): Promise<Following> {
  const f = c.follow({ heartbeatTimeoutMs: 5000, maxRetryMs: 1000, ...o });
  opened.push(f);
  await f.ready({ timeoutMs: 15_000 });
  return f;
}

const TEXT = "The quarterly plan is ready. It covers hiring and budget. Reviews happen in March.";
const SHARE = {
  recipient: "partner@example.org",
  resource: { ref: "doc:42", title: "Q3 plan" },
  channel: "email" as const,
};

const about = (commandId: string, type: string) => (r: ReportEvent) =>
  r.causality.command_id === commandId && r.report.type === type;

function reportIds(evs: readonly StreamEvent[]): string[] {
  return evs.flatMap((e) => (e.type === "report" ? [e.data.report_id] : []));
}

function expectStrictlyIncreasing(ids: string[]): void {
  for (let i = 1; i < ids.length; i++)
    expect(compareReportIds(ids[i] as string, ids[i - 1] as string), `${ids[i - 1]} → ${ids[i]}`).toBeGreaterThan(0);
}

async function caught(p: Promise<unknown>): Promise<NexusApiError> {
  try {
    await p;
  } catch (err) {
    if (isNexusApiError(err)) return err;
    throw err;
  }
  throw new Error("expected a NexusApiError");
}

describe("SDK against the real stack", () => {
  it("sendCommand → 202 with generated ids; the follower reaches command.completed and its worklog says done", async () => {
    const c = clientFor(uniqueTenant("sdk"));
    const f = await follow(c);
    const accepted = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT, max_sentences: 2 } });
    expect(accepted).toMatchObject({
      accepted: true,
      command_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      correlation_id: expect.any(String),
    });
    const first = await f.waitForReport(about(accepted.command_id, "command.accepted"));
    expect(first.causality.correlation_id).toBe(accepted.correlation_id);
    const done = await f.waitForReport(about(accepted.command_id, "command.completed"));
    expect(done.causality.correlation_id).toBe(accepted.correlation_id);
    expect(done.report.type === "command.completed" && done.report.result).toMatchObject({
      sentences: expect.any(Array),
    });
    expect(f.getState()?.worklog.find((w) => w.command_id === accepted.command_id)).toMatchObject({ status: "done" });
    expect(f.follower.reportId).toBe(f.cursor);
  });

  it("the same command_id again (and 5 in parallel) → the same 202 body; the command runs once", async () => {
    const c = clientFor(uniqueTenant("sdk"));
    const f = await follow(c);
    const cmd = {
      type: "doc.summary.create",
      command_id: crypto.randomUUID(),
      params: { text: TEXT },
      client_context: { surface: "sdk-test", correlation_id: "c-idem-1" },
    } as const;
    const a = await c.sendCommand(cmd);
    const again = await Promise.all(Array.from({ length: 5 }, () => c.sendCommand(cmd)));
    for (const b of again) expect(b).toEqual(a);
    await f.waitForReport(about(cmd.command_id, "command.completed"));
    await new Promise((r) => setTimeout(r, 500));
    const completed = f
      .events()
      .filter((e) => e.type === "report" && about(cmd.command_id, "command.completed")(e.data));
    expect(completed).toHaveLength(1);
  });

  it("the same command_id with a different body → NexusApiError 409 IDEMPOTENCY_CONFLICT", async () => {
    const c = clientFor(uniqueTenant("sdk"));
    const id = crypto.randomUUID();
    await c.sendCommand({ type: "doc.summary.create", command_id: id, params: { text: TEXT } });
    const e = await caught(c.sendCommand({ type: "doc.summary.create", command_id: id, params: { text: "Other." } }));
    expect(e).toMatchObject({ code: "IDEMPOTENCY_CONFLICT", status: 409, recoverable: false, attempts: 1 });
    const u = await caught(c.sendCommand({ type: "no_such.type" }));
    expect(u).toMatchObject({ code: "UNKNOWN_COMMAND_TYPE", status: 400 });
  });

  it("RED external_share.prepare → ask.created → approve → ask.executed, with the decision's correlation id", async () => {
    const c = clientFor(uniqueTenant("sdk"));
    const f = await follow(c);
    const cmd = await c.sendCommand({ type: "external_share.prepare", params: SHARE });
    const created = await f.waitForReport(about(cmd.command_id, "ask.created"));
    if (created.report.type !== "ask.created") throw new Error("unreachable");
    const askId = created.report.ask.ask_id;
    expect(f.getState()?.asks.find((a) => a.ask_id === askId)).toMatchObject({ status: "open", risk_level: "RED" });
    expect(f.getState()?.autopilot.status).toBe("waiting_approval");

    const d = await c.approve(askId, { note: "ok to send", correlation_id: "c-approve-sdk" });
    expect(d).toMatchObject({ accepted: true, correlation_id: "c-approve-sdk" });
    const executed = await f.waitForReport((r) => r.causality.ask_id === askId && r.report.type === "ask.executed");
    expect(executed.causality).toMatchObject({ correlation_id: "c-approve-sdk", command_id: cmd.command_id });
    expect(f.getState()?.asks.find((a) => a.ask_id === askId)?.status).toBe("done");
    // The same decision again is idempotent; a different one is a conflict.
    expect(await c.approve(askId, { correlation_id: "c-approve-sdk" })).toEqual(d);
    expect(await caught(c.reject(askId))).toMatchObject({ code: "ASK_ALREADY_DECIDED", status: 409 });
    expect(await caught(c.approve("no-such-ask"))).toMatchObject({ code: "ASK_NOT_FOUND", status: 404 });
  });

  it("a settings update is confirmed by settings.updated and the followed state changes", async () => {
    const c = clientFor(uniqueTenant("sdk"));
    const f = await follow(c);
    const r = await c.updateProfile({ display_name: "Kim Lee", locale: "ko" }, { correlationId: "c-profile-1" });
    expect(r).toMatchObject({ accepted: true, correlation_id: "c-profile-1" });
    const updated = await f.waitForReport(
      (x) => x.report.type === "settings.updated" && x.causality.correlation_id === "c-profile-1",
    );
    expect(updated.report).toMatchObject({ section: "profile", values: { display_name: "Kim Lee", locale: "ko" } });
    expect(f.getState()?.profile).toMatchObject({ display_name: "Kim Lee", locale: "ko" });
    const s = await c.updateSkin({ theme: "dark", accent_color: "#112233" });
    await f.waitForReport((x) => x.causality.correlation_id === s.correlation_id);
    expect(f.getState()?.assistant.skin).toMatchObject({ theme: "dark", accent_color: "#112233" });
  });

  it("resume after the stream service is SIGKILLed and restarted: no report missing or duplicated", async () => {
    const t = uniqueTenant("sdk");
    const c = clientFor(t);
    const f = await follow(c, { maxRetryMs: 500 });
    const a = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT } });
    await f.waitForReport(about(a.command_id, "command.completed"));

    await stack.stop("stream", "SIGKILL");
    // The gateway and workers go on: these are accepted and reported while nobody streams.
    const b = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT } });
    const d = await c.sendCommand({
      type: "prep_pack.create",
      params: { meeting_title: "Q3", attendees: ["Kim"], agenda: ["Plan"] },
    });
    await stack.start("stream");
    await f.waitForReport(about(b.command_id, "command.completed"), { timeoutMs: 30_000 });
    await f.waitForReport(about(d.command_id, "command.completed"), { timeoutMs: 30_000 });
    const e = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT } });
    await f.waitForReport(about(e.command_id, "command.completed"));

    const seen = reportIds(f.events());
    expect(new Set(seen).size).toBe(seen.length);
    expectStrictlyIncreasing(seen);
    expect(f.events().some((ev) => ev.type === "reconnecting")).toBe(true);
    expect(f.stats.connections).toBeGreaterThanOrEqual(2);

    // The truth: every report of the tenant after the snapshot, replayed by a fresh connection.
    const snapshotId = f.events().find((ev) => ev.type === "snapshot");
    if (snapshotId?.type !== "snapshot") throw new Error("no snapshot");
    const truth: string[] = [];
    const replay = c.events({ cursor: snapshotId.data.report_id });
    for await (const ev of replay) {
      if (ev.type === "report") truth.push(ev.data.report_id);
      if (truth.at(-1) === f.cursor) break;
    }
    expect(seen).toEqual(truth);
  });

  it("dedupe when the server re-sends: a reconnect with a rewound Last-Event-ID replays old reports, none is emitted twice", async () => {
    const t = uniqueTenant("sdk");
    let connections = 0;
    let firstConnection: AbortController | undefined;
    let rewindTo: string | undefined;
    // A fetch that lets the test cut the first stream connection and rewind the cursor of the
    // second, so the real stream service re-sends reports the client already emitted.
    const rewinding: typeof fetch = (input, init) => {
      if (!String(input).includes("/agent/reports/stream")) return fetch(input, init);
      connections++;
      const headers = new Headers(init?.headers);
      if (connections === 2 && rewindTo) headers.set("last-event-id", rewindTo);
      const ac = new AbortController();
      init?.signal?.addEventListener("abort", () => ac.abort(init.signal?.reason), { once: true });
      if (connections === 1) firstConnection = ac;
      return fetch(input, { ...init, headers, signal: ac.signal });
    };
    const c = clientFor(t, { fetch: rewinding });
    const f = await follow(c, { maxRetryMs: 300 });
    const a = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT } });
    const b = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT } });
    await f.waitForReport(about(a.command_id, "command.completed"));
    await f.waitForReport(about(b.command_id, "command.completed"));
    const before = reportIds(f.events());
    rewindTo = before[0];
    firstConnection?.abort(new Error("cut by the test"));
    await f.waitFor((ev) => (ev.type === "open" && ev.connection === 2 ? true : undefined), { timeoutMs: 10_000 });
    const d = await c.sendCommand({ type: "doc.summary.create", params: { text: TEXT } });
    await f.waitForReport(about(d.command_id, "command.completed"));

    const seen = reportIds(f.events());
    expect(seen.slice(0, before.length)).toEqual(before);
    expect(new Set(seen).size).toBe(seen.length);
    expectStrictlyIncreasing(seen);
    expect(f.stats.duplicatesDropped).toBe(before.length - 1);
  });
});

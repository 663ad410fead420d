import { NexusApiError } from "@nexus/client";
import {
  type CommandAccepted,
  type ErrorBody,
  type ErrorEvent,
  ReportEvent,
  SnapshotEvent,
  type Tenant,
} from "@nexus/contracts";
import { uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

let e: E2E;
beforeAll(async () => {
  e = await startE2E();
});
afterAll(async () => {
  await e?.close();
});

const GREEN = {
  "draft_email.create": { to: "kim@example.com", brief: "Politely decline the offer from the vendor" },
  "prep_pack.create": {
    meeting_title: "Q3 planning",
    attendees: ["Kim", "Lee"],
    agenda: ["Budget", "Hiring"],
    docs: ["Q2 report"],
  },
  "doc.summary.create": {
    text: "NATS JetStream stores messages durably. It replays them to consumers in order. Consumers acknowledge each message after processing. Unacknowledged messages are redelivered after the ack wait. The weather was nice yesterday. JetStream also deduplicates messages by their id within a window.",
    max_sentences: 2,
  },
  "calendar.options.create": {
    duration_minutes: 30,
    window: { start: "2026-03-02T08:00:00+01:00", end: "2026-03-04T18:00:00+01:00" },
    busy: [{ start: "2026-03-02T09:00:00+01:00", end: "2026-03-02T12:00:00+01:00" }],
    timezone: "Europe/Berlin",
    working_hours: { start: "09:00", end: "17:00" },
  },
} as const;

describe("POST /sidecar/command end to end (through the SDK)", () => {
  it("answers 202 with the accepted body; command.accepted follows on the stream with the same ids", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const body = command("draft_email.create", GREEN["draft_email.create"]);
    const accepted = await e.client(t).sendCommand(body);
    expect(accepted).toEqual({
      accepted: true,
      status: "accepted",
      command_id: body.command_id,
      correlation_id: body.client_context.correlation_id,
    });
    const report = await w.waitForReport("command.accepted", { command_id: body.command_id });
    expect(report.causality).toMatchObject({ command_id: body.command_id, correlation_id: accepted.correlation_id });
  });

  it("runs every GREEN type to a real result, with the correlation id in every follow-up report", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const c = e.client(t);
    for (const [type, params] of Object.entries(GREEN)) {
      const body = command(type, params as Record<string, unknown>);
      await c.sendCommand(body);
      const done = await w.waitForReport("command.completed", { command_id: body.command_id }, 15_000);
      expect(ReportEvent.safeParse(done).success).toBe(true);
      const mine = w.reports().filter((x) => x.causality.command_id === body.command_id);
      expect(mine.map((x) => x.report.type)).toEqual(["command.accepted", "command.started", "command.completed"]);
      for (const x of mine) expect(x.causality.correlation_id).toBe(body.client_context.correlation_id);
      const result = done.report.result;
      if (type === "draft_email.create") {
        expect(result.subject.length).toBeGreaterThan(3);
        expect(result.body).toMatch(/Kim/);
      } else if (type === "prep_pack.create") {
        expect(result.checklist.join("\n")).toMatch(/Budget/);
        expect(result.summary).toMatch(/Q3 planning/);
      } else if (type === "doc.summary.create") {
        expect(result.sentences).toHaveLength(2);
        expect(result.summary).not.toMatch(/weather/);
      } else {
        expect(result.options).toHaveLength(3);
        for (const o of result.options) {
          const s = Date.parse(o.start);
          expect(Date.parse(o.end) - s).toBe(30 * 60_000);
          // none overlaps the busy morning of 2 March
          expect(
            s >= Date.parse("2026-03-02T12:00:00+01:00") ||
              Date.parse(o.end) <= Date.parse("2026-03-02T09:00:00+01:00"),
          ).toBe(true);
        }
      }
    }
  });

  it("summarises a document of almost 1 MiB (the largest legal text passes through NATS)", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const sentence = "JetStream keeps every report of a tenant in order and replays it after a reconnect. ";
    const text = sentence.repeat(Math.floor((1024 * 1024 - 100) / sentence.length));
    const body = command("doc.summary.create", { text, max_sentences: 2 });
    await e.client(t).sendCommand(body);
    const done = await w.waitForReport("command.completed", { command_id: body.command_id }, 30_000);
    expect(done.report.result.sentences).toHaveLength(2);
  });

  it("fails calendar.options.create clearly when fewer than 3 slots exist", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const body = command("calendar.options.create", {
      duration_minutes: 60,
      window: { start: "2026-03-02T09:00:00+01:00", end: "2026-03-02T11:00:00+01:00" },
      busy: [],
      timezone: "Europe/Berlin",
    });
    await e.client(t).sendCommand(body);
    const failed = await w.waitForReport("command.failed", { command_id: body.command_id });
    expect(failed.report.error.code).toBe("INSUFFICIENT_SLOTS");
    expect(failed.report.error.message).toMatch(/2/);
  });

  it("accepts the older dialect exactly like the canonical one", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    // The older dialect on purpose: raw HTTP (the SDK speaks the canonical one).
    const r = await e.call<CommandAccepted>("POST", "/sidecar/command", t, {
      command_type: "prep_pack.create",
      params: GREEN["prep_pack.create"],
      correlation_id: "legacy-corr",
    });
    expect(r.status).toBe(202);
    expect(r.body.correlation_id).toBe("legacy-corr");
    expect(r.body.command_id).toMatch(/^[0-9a-f-]{36}$/);
    const done = await w.waitForReport("command.completed", { command_id: r.body.command_id });
    expect(done.causality.correlation_id).toBe("legacy-corr");
  });

  it("is idempotent on command_id: same body → same 202 (also 10 in parallel) and one run; other body → 409", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const c = e.client(t);
    const body = command("doc.summary.create", GREEN["doc.summary.create"]);
    const answers = await Promise.all(Array.from({ length: 10 }, () => c.sendCommand(body)));
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
    await w.waitForReport("command.completed", { command_id: body.command_id });
    expect(await c.sendCommand(body)).toEqual(answers[0]);
    const conflict = await c.sendCommand({ ...body, params: { text: "Something else entirely." } }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(conflict).toBeInstanceOf(NexusApiError);
    expect(conflict).toMatchObject({ status: 409, code: "IDEMPOTENCY_CONFLICT", recoverable: false, attempts: 1 });
    await new Promise((r) => setTimeout(r, 500));
    const mine = w.reports().filter((x) => x.causality.command_id === body.command_id);
    expect(mine.filter((x) => x.report.type === "command.completed")).toHaveLength(1);
    expect(mine.filter((x) => x.report.type === "command.accepted")).toHaveLength(1);
  });

  it("keeps command ids per tenant: another tenant reusing a command_id gets its own command run", async () => {
    const a = uniqueTenant();
    const b = uniqueTenant();
    const [wa, wb] = [await e.watch(a), await e.watch(b)];
    const body = command("prep_pack.create", GREEN["prep_pack.create"]);
    const other = { ...body, params: { ...GREEN["prep_pack.create"], meeting_title: "B's own meeting" } };
    await e.client(a).sendCommand(body);
    await e.client(b).sendCommand(other);
    const da = await wa.waitForReport("command.completed", { command_id: body.command_id });
    const db = await wb.waitForReport("command.completed", { command_id: body.command_id });
    expect(da.report.result.summary).toMatch(/Q3 planning/);
    expect(db.report.result.summary).toMatch(/B's own meeting/);
    expect(wa.reports().every((x) => x.tenant.org_id === a.org_id)).toBe(true);
  });

  it("the SDK's typed errors carry the standard error body: UNKNOWN_COMMAND_TYPE and VALIDATION_FAILED with paths", async () => {
    const c = e.client(uniqueTenant());
    const unknown = await c.sendCommand({ type: "nope.create", params: {} }).catch((err: unknown) => err);
    expect(unknown).toMatchObject({ status: 400, code: "UNKNOWN_COMMAND_TYPE", stage: "validate" });
    const invalid = await c
      .sendCommand({ type: "doc.summary.create", params: { max_sentences: 0 } as never })
      .catch((err: unknown) => err as NexusApiError);
    expect(invalid).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    expect((invalid as NexusApiError).details?.map((d) => d.path)).toEqual(
      expect.arrayContaining(["params.text", "params.max_sentences"]),
    );
  });

  it("answers every bad input with the standard error body and accepts nothing", async () => {
    const t = uniqueTenant();
    const post = (body: unknown, headers: Record<string, string> = {}, tenant: Tenant | null = t) =>
      e.call<ErrorBody>("POST", "/sidecar/command", tenant, body, headers);
    const cases: [Promise<{ status: number; body: ErrorBody }>, number, string][] = [
      [post("{not json"), 400, "MALFORMED_JSON"],
      [post({ type: "nope.create", params: {} }), 400, "UNKNOWN_COMMAND_TYPE"],
      [post({ type: "doc.summary.create", params: { max_sentences: 0 } }), 400, "VALIDATION_FAILED"],
      [post("x", { "content-type": "text/plain" }), 415, "UNSUPPORTED_MEDIA_TYPE"],
      [
        post({ type: "doc.summary.create", params: { text: "a".repeat(2 * 1024 * 1024 + 10) } }),
        413,
        "PAYLOAD_TOO_LARGE",
      ],
      [post({ type: "doc.summary.create", params: { text: "x" } }, {}, null), 400, "INVALID_TENANT"],
    ];
    for (const bad of ["a.b", "*", ">", "a b", "x".repeat(65)]) {
      cases.push([
        post({ type: "doc.summary.create", params: { text: "x" } }, {}, { org_id: bad, project_id: "p" }),
        400,
        "INVALID_TENANT",
      ]);
    }
    for (const [p, status, code] of cases) {
      const r = await p;
      expect(r.status, JSON.stringify(r.body)).toBe(status);
      expect(r.body.error.code).toBe(code);
      expect(typeof r.body.error.message).toBe("string");
      expect(typeof r.body.error.recoverable).toBe("boolean");
      expect(typeof r.body.correlation_id).toBe("string");
    }
    const v = await post({ type: "doc.summary.create", params: { max_sentences: 0 } });
    expect(v.body.error.details!.map((d) => d.path)).toEqual(
      expect.arrayContaining(["params.text", "params.max_sentences"]),
    );
    // nothing was accepted: the tenant's stream has no report at all
    const sse = await e.stream(t);
    await sse.waitFor((ev) => ev.some((x) => x.event === "snapshot"));
    expect(sse.named("snapshot")[0]!.data.report_id).toBe("0");
    expect(sse.named("snapshot")[0]!.data.snapshot.worklog).toEqual([]);
  });
});

describe("GET /agent/reports/stream end to end (through the gateway)", () => {
  // These tests read the wire itself (framing, ids, retry, cursors), so they use a raw SSE
  // client; the commands that feed them go through the SDK.
  async function tenantWithReports(n: number) {
    const t = uniqueTenant();
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await e.client(t).sendCommand(command("prep_pack.create", GREEN["prep_pack.create"]));
      ids.push(r.first_followup_report_id as string);
    }
    return { t, ids };
  }

  it("sends retry, a snapshot first, then strictly increasing report ids; ping carries no id", async () => {
    const t = uniqueTenant();
    const sse = await e.stream(t);
    expect(sse.contentType).toMatch(/text\/event-stream/);
    for (let i = 0; i < 5; i++) await e.client(t).sendCommand(command("prep_pack.create", GREEN["prep_pack.create"]));
    await sse.waitFor(
      (ev) => ev.filter((x) => x.event === "report" && x.data.report.type === "command.completed").length >= 5,
      15_000,
      "5 completions",
    );
    await sse.waitFor((ev) => ev.some((x) => x.event === "ping"), 5000, "ping");
    expect(sse.retry).toBe(3000);
    expect(sse.events[0]!.event).toBe("snapshot");
    expect(SnapshotEvent.safeParse(sse.events[0]!.data).success).toBe(true);
    const ids = sse.named("report").map((x) => Number(x.id));
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
    for (const x of sse.named("report")) expect(x.id).toBe(x.data.report_id);
    for (const p of sse.named("ping")) expect(p.id).toBeUndefined();
  });

  it("replays gap-free and duplicate-free from Last-Event-ID and from ?cursor=, the header winning", async () => {
    const { t } = await tenantWithReports(4);
    const all = await e.stream(t);
    await all.waitFor(
      (ev) => ev.filter((x) => x.event === "report").length >= 0 && ev.some((x) => x.event === "snapshot"),
    );
    // the full history, from cursor 0
    const full = await e.stream(t, { query: { cursor: "0" } });
    await full.waitFor(
      (ev) => ev.filter((x) => x.event === "report" && x.data.report.type === "command.completed").length >= 4,
      15_000,
      "history",
    );
    const history = full.named("report").map((x) => x.id!);
    const cut = history[3]!;
    const expected = history.slice(4);

    const byHeader = await e.stream(t, { headers: { "last-event-id": cut } });
    const byQuery = await e.stream(t, { query: { cursor: cut } });
    const both = await e.stream(t, { headers: { "last-event-id": cut }, query: { cursor: history[0]! } });
    for (const c of [byHeader, byQuery, both]) {
      await c.waitFor((ev) => ev.filter((x) => x.event === "report").length >= expected.length, 10_000, "replay");
      expect(c.named("snapshot")).toHaveLength(0);
      expect(
        c
          .named("report")
          .slice(0, expected.length)
          .map((x) => x.id),
      ).toEqual(expected);
    }
  });

  it("answers an expired, a future or an invalid cursor with CURSOR_EXPIRED and a fresh snapshot", async () => {
    const { t } = await tenantWithReports(1);
    for (const cursor of ["999999999", "abc", "-1"]) {
      const c = await e.stream(t, { query: { cursor } });
      await c.waitFor((ev) => ev.some((x) => x.event === "snapshot"), 10_000, `snapshot after ${cursor}`);
      expect(c.events[0]!.event).toBe("error");
      expect(c.events[0]!.id).toBeUndefined();
      expect((c.events[0]!.data as ErrorEvent).error).toMatchObject({ code: "CURSOR_EXPIRED", recoverable: true });
      expect(c.events[1]!.event).toBe("snapshot");
    }
  });

  it("keeps tenants apart: reports, cursors and query-string tenants", async () => {
    const a = await tenantWithReports(2);
    const b = uniqueTenant();
    const sseB = await e.stream(b, { viaQuery: true });
    await e.client(a.t).sendCommand(command("prep_pack.create", GREEN["prep_pack.create"]));
    await new Promise((r) => setTimeout(r, 1500));
    expect(sseB.named("report")).toHaveLength(0);
    // a cursor of tenant A used by tenant B is indistinguishable from a nonexistent one
    const stolen = await e.stream(b, { query: { cursor: a.ids[0]! } });
    await stolen.waitFor((ev) => ev.some((x) => x.event === "snapshot"));
    expect((stolen.events[0]!.data as ErrorEvent).error.code).toBe("CURSOR_EXPIRED");
    expect(stolen.named("report")).toHaveLength(0);
    // crafted tenant ids never widen a subscription
    for (const bad of ["*", ">", "a.b", "a b"]) {
      const c = await e.stream({ org_id: bad, project_id: "p" }, { viaQuery: true });
      expect(c.status).toBe(400);
      expect((c.events[0]!.data as ErrorBody).error.code).toBe("INVALID_TENANT");
    }
  });
});

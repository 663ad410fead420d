import type http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "./client.ts";
import { isNexusApiError } from "./errors.ts";
import { StateFollower } from "./state.ts";
import type { StreamEvent, StreamOptions } from "./stream.ts";
import {
  apiError,
  delay,
  emptySnapshot,
  frame,
  json,
  type LocalServer,
  localServer,
  reportData,
  reportFrame,
  snapshotData,
  snapshotFrame,
  sseStart,
  TENANT,
} from "./testing/local-server.ts";
import type { LenientProgressEvent } from "./wire.ts";

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function client(s: LocalServer) {
  return createClient({
    baseUrl: s.url,
    auth: { mode: "headers", tenant: TENANT },
    retry: { baseDelayMs: 1, maxDelayMs: 1 },
  });
}

/** The stream requests the server saw. */
const streamRequests = (s: LocalServer) => s.requests.filter((r) => r.path === "/agent/reports/stream");

/**
 * Collects events until `until` holds for the list (then closes the stream) or `timeoutMs`
 * passes (then fails with what was seen).
 */
async function collect(
  s: LocalServer,
  until: (evs: StreamEvent[]) => boolean,
  opts: StreamOptions = {},
  timeoutMs = 5000,
): Promise<StreamEvent[]> {
  const stream = client(s).events({ random: () => 0, ...opts });
  const seen: StreamEvent[] = [];
  const timer = setTimeout(() => stream.close(), timeoutMs);
  try {
    for await (const ev of stream) {
      seen.push(ev);
      if (until(seen)) break;
    }
  } finally {
    clearTimeout(timer);
  }
  if (!until(seen)) throw new Error(`timed out; saw ${summary(seen).join(", ")}`);
  return seen;
}

/** `type#id` of each event, pings left out, for compact assertions. */
function summary(evs: StreamEvent[]): string[] {
  return evs
    .filter((e) => e.type !== "ping")
    .map((e) => {
      switch (e.type) {
        case "snapshot":
          return `snapshot#${e.data.report_id}`;
        case "report":
          return `report#${e.data.report_id}`;
        case "error":
          return `error:${e.data.error.code}`;
        case "resynced":
          return `resynced:${e.reason}#${e.report_id}`;
        case "reconnecting":
          return `reconnecting:${e.reason}`;
        case "open":
          return `open:${e.cursor ?? "-"}`;
        case "progress":
          return `progress:${e.data.progress.stage}`;
        case "unrecognized":
          return `unrecognized:${e.event}`;
        default:
          return (e as StreamEvent).type;
      }
    });
}

const reportIds = (evs: StreamEvent[]) => evs.flatMap((e) => (e.type === "report" ? [e.data.report_id] : []));

describe("report stream against a local SSE server", () => {
  it("dedupes reports the server re-sends: never one at or below the last emitted", async () => {
    server = await localServer((_req, res) => {
      sseStart(res);
      res.write(snapshotFrame("10"));
      for (const id of ["9", "10", "11", "12", "11", "12", "15", "13", "16"]) res.write(reportFrame(id));
    });
    const stream = client(server).events();
    const seen: StreamEvent[] = [];
    for await (const ev of stream) {
      seen.push(ev);
      if (ev.type === "report" && ev.data.report_id === "16") break;
    }
    expect(reportIds(seen)).toEqual(["11", "12", "15", "16"]);
    expect(stream.stats.duplicatesDropped).toBe(5);
    expect(stream.cursor).toBe("16");
  });

  it("a connection cut mid-frame resumes with Last-Event-ID of the last complete event; nothing missing or doubled", async () => {
    server = await localServer(async (req, res, n) => {
      sseStart(res);
      if (n === 1) {
        res.write(snapshotFrame("10") + reportFrame("11"));
        const f = reportFrame("12");
        res.write(f.slice(0, f.length / 2));
        await delay(50);
        res.socket?.destroy();
        return;
      }
      // Resume exactly after the cursor, as the stream service does.
      expect(req.headers["last-event-id"]).toBe("11");
      res.write(reportFrame("12") + reportFrame("13"));
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("13"));
    expect(summary(seen)).toEqual([
      "open:-",
      "snapshot#10",
      "report#11",
      "reconnecting:network_error",
      "open:11",
      "report#12",
      "report#13",
    ]);
    expect(streamRequests(server).map((r) => r.headers["last-event-id"])).toEqual([undefined, "11"]);
  });

  it("a clean end of the response reconnects too, after the server's retry: hint", async () => {
    server = await localServer((_req, res, n) => {
      sseStart(res, 200);
      res.end(n === 1 ? snapshotFrame("3") : reportFrame("4"));
    });
    const t0 = Date.now();
    const seen = await collect(server, (evs) => reportIds(evs).includes("4"));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    const rec = seen.find((e) => e.type === "reconnecting");
    expect(rec).toMatchObject({ type: "reconnecting", reason: "closed", attempt: 1, delayMs: 200 });
  });

  it("error CURSOR_EXPIRED, then a fresh snapshot: emits error, snapshot, resynced and goes on live", async () => {
    server = await localServer((req, res) => {
      sseStart(res);
      expect(req.headers["last-event-id"]).toBe("5");
      res.write(frame("error", { error: { code: "CURSOR_EXPIRED", message: "old", recoverable: true }, ts: "t" }));
      res.write(snapshotFrame("20") + reportFrame("21"));
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("21"), { cursor: "5" });
    expect(summary(seen)).toEqual([
      "open:5",
      "error:CURSOR_EXPIRED",
      "snapshot#20",
      "resynced:cursor_expired#20",
      "report#21",
    ]);
  });

  it("CURSOR_EXPIRED and the connection ends before the snapshot: reconnects without a cursor", async () => {
    server = await localServer((_req, res, n) => {
      sseStart(res);
      if (n === 1) {
        res.end(frame("error", { error: { code: "CURSOR_EXPIRED", message: "old", recoverable: true }, ts: "t" }));
        return;
      }
      res.write(snapshotFrame("30"));
    });
    const seen = await collect(server, (evs) => evs.some((e) => e.type === "resynced"), { cursor: "7" });
    expect(streamRequests(server).map((r) => r.headers["last-event-id"])).toEqual(["7", undefined]);
    expect(summary(seen)).toContain("resynced:cursor_expired#30");
  });

  it("a snapshot with a lower id after a stream reset becomes the new baseline (dedupe floor resets)", async () => {
    server = await localServer((_req, res) => {
      sseStart(res);
      res.write(snapshotFrame("100") + reportFrame("101"));
      res.write(frame("error", { error: { code: "CURSOR_EXPIRED", message: "reset", recoverable: true }, ts: "t" }));
      res.write(snapshotFrame("2") + reportFrame("3"));
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("3"));
    expect(reportIds(seen)).toEqual(["101", "3"]);
  });

  it("heartbeat silence: reconnects after heartbeatTimeoutMs with Last-Event-ID", async () => {
    server = await localServer((_req, res, n) => {
      sseStart(res);
      if (n === 1)
        res.write(snapshotFrame("10")); // then silence, no pings
      else res.write(reportFrame("11"));
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("11"), { heartbeatTimeoutMs: 300 });
    expect(summary(seen)).toEqual(["open:-", "snapshot#10", "reconnecting:heartbeat_timeout", "open:10", "report#11"]);
  });

  it("pings keep a quiet connection alive (no reconnect while they arrive)", async () => {
    server = await localServer(async (_req, res) => {
      sseStart(res);
      res.write(snapshotFrame("10"));
      // 2 s of pings 100 ms apart against an 800 ms timeout: the connection outlives the
      // timeout only because the pings re-arm it, and a stall must exceed 700 ms to fire it.
      for (let i = 0; i < 20; i++) {
        await delay(100);
        res.write(frame("ping", { ts: new Date().toISOString() }));
      }
      res.write(reportFrame("11"));
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("11"), { heartbeatTimeoutMs: 800 });
    expect(seen.filter((e) => e.type === "reconnecting")).toHaveLength(0);
    expect(seen.filter((e) => e.type === "ping").length).toBe(20);
  });

  it("ticket mode: a fresh ticket for every connection, sent as ?ticket= without credential headers", async () => {
    let issued = 0;
    const used = new Set<string>();
    server = await localServer((req, res) => {
      if (req.path === "/agent/reports/ticket") {
        expect(req.headers["x-org-id"]).toBe("acme");
        return json(res, 200, { ticket: `t-${++issued}`, expires_at: new Date(Date.now() + 60_000).toISOString() });
      }
      const t = req.query.get("ticket") ?? "";
      if (!t.startsWith("t-") || used.has(t)) return apiError(res, 401, "UNAUTHENTICATED", false);
      used.add(t);
      expect(req.headers["x-org-id"]).toBeUndefined();
      sseStart(res);
      // Each connection delivers one event and ends.
      res.end(used.size === 1 ? snapshotFrame("1") : reportFrame(String(used.size)));
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("3"), { ticket: true });
    expect(reportIds(seen)).toEqual(["2", "3"]);
    const streams = streamRequests(server);
    expect(streams.map((r) => r.query.get("ticket"))).toEqual(["t-1", "t-2", "t-3"]);
    expect(streams.map((r) => r.headers["last-event-id"])).toEqual([undefined, "1", "2"]);
  });

  it("ticket mode: a refused (used or expired) ticket gets a new ticket, not a fatal error", async () => {
    let issued = 0;
    server = await localServer((req, res) => {
      if (req.path === "/agent/reports/ticket") return json(res, 200, { ticket: `t-${++issued}`, expires_at: "x" });
      if (req.query.get("ticket") === "t-1") return apiError(res, 401, "UNAUTHENTICATED", false);
      sseStart(res);
      res.write(snapshotFrame("1"));
    });
    const seen = await collect(server, (evs) => evs.some((e) => e.type === "snapshot"), {
      ticket: true,
      initialRetryMs: 10,
    });
    expect(summary(seen)).toEqual(["reconnecting:http_error", "open:-", "snapshot#1"]);
  });

  it("503 from the gateway while the stream service is away: reconnects with backoff; 429 honours Retry-After", async () => {
    server = await localServer((_req, res, n) => {
      if (n === 1) return apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true);
      if (n === 2) return apiError(res, 429, "RATE_LIMITED", true, { "retry-after": "1" });
      sseStart(res);
      res.write(snapshotFrame("4"));
    });
    const seen = await collect(server, (evs) => evs.some((e) => e.type === "snapshot"), { initialRetryMs: 10 });
    const rec = seen.filter((e) => e.type === "reconnecting");
    expect(rec.map((e) => [e.attempt, e.reason, (e.error as { code?: string }).code])).toEqual([
      [1, "http_error", "DEPENDENCY_UNAVAILABLE"],
      [2, "http_error", "RATE_LIMITED"],
    ]);
    expect(rec[1]?.delayMs).toBe(1000);
  });

  it("CREDENTIAL_EXPIRED: reconnects with a fresh token from the token function and resumes by Last-Event-ID", async () => {
    server = await localServer((req, res, n) => {
      if (req.headers.authorization !== `Bearer tok-${n}`) return apiError(res, 401, "UNAUTHENTICATED", false);
      sseStart(res);
      if (n === 1) {
        res.write(snapshotFrame("10") + reportFrame("11"));
        res.end(frame("error", { error: { code: "CREDENTIAL_EXPIRED", message: "exp", recoverable: true }, ts: "t" }));
        return;
      }
      res.write(reportFrame("12"));
    });
    let i = 0;
    const c = createClient({ baseUrl: server.url, auth: { mode: "bearer", token: async () => `tok-${++i}` } });
    const seen: StreamEvent[] = [];
    for await (const ev of c.events({ random: () => 0 })) {
      seen.push(ev);
      if (ev.type === "report" && ev.data.report_id === "12") break;
    }
    expect(summary(seen)).toEqual([
      "open:-",
      "snapshot#10",
      "report#11",
      "error:CREDENTIAL_EXPIRED",
      "reconnecting:closed",
      "open:11",
      "report#12",
    ]);
  });

  it("a 403 ends the stream with that NexusApiError (retrying cannot fix it)", async () => {
    server = await localServer((_req, res) => apiError(res, 403, "TENANT_MISMATCH", false));
    const stream = client(server).events();
    let err: unknown;
    try {
      for await (const _ of stream) {
      }
    } catch (e) {
      err = e;
    }
    expect(isNexusApiError(err, "TENANT_MISMATCH")).toBe(true);
    expect(server.requests).toHaveLength(1);
  });

  it("maxFailures bounds consecutive failed connections", async () => {
    server = await localServer((_req, res) => apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true));
    const stream = client(server).events({ maxFailures: 2, initialRetryMs: 1, random: () => 0 });
    await expect(
      (async () => {
        for await (const _ of stream) {
        }
      })(),
    ).rejects.toMatchObject({ code: "DEPENDENCY_UNAVAILABLE" });
    expect(server.requests).toHaveLength(3);
  });

  it("progress events are typed, carry no id and do not move the cursor; unknown events are reported, not fatal", async () => {
    server = await localServer((_req, res) => {
      sseStart(res);
      res.write(snapshotFrame("10"));
      res.write(
        frame("progress", {
          progress: { command_id: "cmd-1", stage: "drafting", percent: 40, text_delta: "Dear " },
          causality: { correlation_id: "c-1", command_id: "cmd-1" },
          ts: "t",
        }),
      );
      res.write(frame("telemetry", { x: 1 }));
      res.write(frame("report", reportData("11", { type: "command.rewound" as never, status: "done" }), "11"));
      res.write(reportFrame("12"));
    });
    const stream = client(server).events();
    const seen: StreamEvent[] = [];
    for await (const ev of stream) {
      seen.push(ev);
      if (ev.type === "report") break;
    }
    expect(summary(seen)).toEqual([
      "open:-",
      "snapshot#10",
      "progress:drafting",
      "unrecognized:telemetry",
      "unrecognized:report",
      "report#12",
    ]);
    const p = seen.find((e) => e.type === "progress");
    expect(p?.type === "progress" && p.data.progress).toEqual({
      command_id: "cmd-1",
      stage: "drafting",
      percent: 40,
      text_delta: "Dear ",
    });
  });

  it("a report whose error code is newer than the contracts still arrives as a typed report", async () => {
    server = await localServer((_req, res) => {
      sseStart(res);
      res.write(snapshotFrame("1"));
      res.write(
        frame(
          "report",
          reportData("2", {
            type: "command.failed",
            status: "failed",
            error: { code: "BUDGET_EXCEEDED" as never, message: "no tokens left", recoverable: false },
          }),
          "2",
        ),
      );
    });
    const seen = await collect(server, (evs) => reportIds(evs).includes("2"));
    const r = seen.find((e) => e.type === "report");
    expect(r?.type === "report" && r.data.report).toMatchObject({
      type: "command.failed",
      error: { code: "BUDGET_EXCEEDED", message: "no tokens left" },
    });
  });
});

describe("stream options: reconnect policy, CREDENTIAL_EXPIRED, received objects (local SSE server)", () => {
  it("reconnectDelay replaces the default policy (the server's retry: hint is not the floor)", async () => {
    server = await localServer((_req, res, n) => {
      sseStart(res, 5000); // a long hint the policy overrides
      res.end(n === 1 ? snapshotFrame("1") : reportFrame(String(n)));
    });
    const calls: [number, number][] = [];
    const seen = await collect(server, (evs) => reportIds(evs).includes("3"), {
      reconnectDelay: (failure, hint) => {
        calls.push([failure, hint]);
        return 7 * failure;
      },
    });
    const rec = seen.filter((e) => e.type === "reconnecting");
    expect(rec.map((e) => e.delayMs)).toEqual([7, 7]);
    expect(calls).toEqual([
      [1, 5000],
      [1, 5000],
    ]);
  });

  it("CREDENTIAL_EXPIRED in ticket mode: auth.renew() first, then at once a fresh ticket and Last-Event-ID = the cursor", async () => {
    let token = "tok-1";
    const log: string[] = [];
    server = await localServer((req, res) => {
      if (req.path === "/agent/reports/ticket") {
        log.push(`ticket with ${req.headers.authorization}`);
        return json(res, 200, { ticket: `t-${log.length}`, expires_at: "x" });
      }
      log.push(`stream ${req.query.get("ticket")} after ${req.headers["last-event-id"] ?? "-"}`);
      sseStart(res, 60_000); // a reconnect that waited for this hint would time the test out
      if (req.query.get("ticket") === "t-1") {
        res.write(snapshotFrame("10") + reportFrame("11"));
        res.end(frame("error", { error: { code: "CREDENTIAL_EXPIRED", message: "exp", recoverable: true }, ts: "t" }));
        return;
      }
      res.write(reportFrame("11") + reportFrame("12"));
    });
    const c = createClient({
      baseUrl: server.url,
      auth: {
        mode: "bearer",
        token: () => token,
        renew: async () => {
          log.push("renew");
          token = "tok-2";
          return true;
        },
      },
    });
    const seen: StreamEvent[] = [];
    const t0 = Date.now();
    for await (const ev of c.events({ ticket: true })) {
      seen.push(ev);
      if (ev.type === "report" && ev.data.report_id === "12") break;
    }
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(summary(seen)).toEqual([
      "open:-",
      "snapshot#10",
      "report#11",
      "error:CREDENTIAL_EXPIRED",
      "reconnecting:closed",
      "open:11",
      "report#12",
    ]);
    expect(seen.find((e) => e.type === "reconnecting")).toMatchObject({ delayMs: 0 });
    expect(log).toEqual([
      "ticket with Bearer tok-1",
      "stream t-1 after -",
      "renew",
      "ticket with Bearer tok-2",
      "stream t-4 after 11",
    ]);
  });

  it("ticketFailed tells a refused ticket request (the client's credential) from a refused ticket", async () => {
    let n = 0;
    server = await localServer((req, res) => {
      if (req.path === "/agent/reports/ticket") {
        if (++n === 1) return apiError(res, 401, "UNAUTHENTICATED", false);
        return json(res, 200, { ticket: `t-${n}`, expires_at: "x" });
      }
      if (req.query.get("ticket") === "t-2") return apiError(res, 401, "UNAUTHENTICATED", false);
      sseStart(res);
      res.write(snapshotFrame("1"));
    });
    const c = createClient({ baseUrl: server.url, auth: { mode: "bearer", token: () => "tok" } });
    const seen: StreamEvent[] = [];
    for await (const ev of c.events({ ticket: true, reconnectDelay: () => 1 })) {
      seen.push(ev);
      if (ev.type === "snapshot") break;
    }
    const rec = seen.filter((e) => e.type === "reconnecting");
    expect(rec.map((e) => [e.ticketFailed ?? false, (e.error as { status?: number }).status])).toEqual([
      [true, 401],
      [false, 401],
    ]);
  });

  it("keepReceived: reports and snapshots keep fields the contracts do not name; progress needs no causality", async () => {
    const report = { ...reportData("11"), extra: { kept: true } };
    const snap = snapshotData("10");
    const progressNoCausality = { progress: { command_id: "cmd-1", stage: "drafting", percent: 140 } };
    server = await localServer((_req, res) => {
      sseStart(res);
      res.write(
        frame(
          "snapshot",
          { ...snap, snapshot: { ...snap.snapshot, principal: { id: "kim", roles: ["admin"] } } },
          "10",
        ),
      );
      res.write(frame("progress", progressNoCausality));
      res.write(frame("report", report, "11"));
    });
    const lenient: StreamEvent<LenientProgressEvent>[] = [];
    for await (const ev of client(server).events({ keepReceived: true })) {
      lenient.push(ev);
      if (ev.type === "report") break;
    }
    const s = lenient.find((e) => e.type === "snapshot");
    expect(s?.type === "snapshot" && (s.data.snapshot as { principal?: unknown }).principal).toEqual({
      id: "kim",
      roles: ["admin"],
    });
    const p = lenient.find((e) => e.type === "progress");
    expect(p?.type === "progress" && p.data.progress).toMatchObject({ command_id: "cmd-1", percent: 100 });
    const r = lenient.find((e) => e.type === "report");
    expect(r?.type === "report" && (r.data as unknown as { extra?: unknown }).extra).toEqual({ kept: true });

    // The default (strict) mode copies through zod: the extra field is gone, the progress refused.
    const strict = await collect(server, (evs) => evs.some((e) => e.type === "report"));
    expect(summary(strict)).toEqual(["open:-", "snapshot#10", "unrecognized:progress", "report#11"]);
    const sr = strict.find((e) => e.type === "report");
    expect(sr?.type === "report" && "extra" in sr.data).toBe(false);
  });

  it("history with keepReceived returns the received reports", async () => {
    server = await localServer((_req, res) =>
      json(res, 200, { reports: [{ ...reportData("5"), extra: 1 }], next_before: null }),
    );
    const kept = await client(server).history({ before: "9", keepReceived: true });
    expect((kept.reports[0] as unknown as { extra?: number }).extra).toBe(1);
    const copied = await client(server).history({ before: "9" });
    expect("extra" in (copied.reports[0] as object)).toBe(false);
  });
});

describe("StateFollower and client.follow (local SSE server)", () => {
  it("applies reports on top of the snapshot with applyReport; ignores re-applied ones", () => {
    const f = new StateFollower();
    const changes: string[] = [];
    f.onChange((_s, cause) => changes.push(cause.report_id));
    expect(f.getState()).toBeUndefined();
    expect(f.applyReport(reportData("1") as never)).toBe(false); // nothing to apply it to yet
    f.apply({ type: "snapshot", data: snapshotData("10") });
    f.apply({
      type: "report",
      data: reportData("11", { type: "command.accepted", status: "accepted", command_id: "c1" }) as never,
    });
    f.apply({ type: "report", data: reportData("12", { command_id: "c1" }) as never });
    expect(f.apply({ type: "report", data: reportData("11", { command_id: "c1" }) as never })).toBe(false);
    expect(f.getState()?.worklog).toMatchObject([{ command_id: "c1", status: "done" }]);
    expect(f.reportId).toBe("12");
    expect(changes).toEqual(["10", "11", "12"]);
  });

  it("follow(): state, waitForReport for an event already seen, and the callback API", async () => {
    const snap = emptySnapshot();
    server = await localServer((_req, res: http.ServerResponse) => {
      sseStart(res);
      res.write(snapshotFrame("10", snap));
      res.write(reportFrame("11", { type: "command.accepted", status: "accepted", command_id: "c1" }));
      res.write(reportFrame("12", { command_id: "c1" }));
    });
    const c = client(server);
    const f = c.follow();
    const state = await f.ready();
    expect(state.worklog).toEqual([]);
    const done = await f.waitForReport((r) => r.report.type === "command.completed");
    expect(done.report_id).toBe("12");
    // Already seen: resolves from the record.
    expect((await f.waitForReport((r) => r.report.type === "command.accepted")).report_id).toBe("11");
    expect(f.getState()?.autopilot).toEqual({ status: "idle", in_flight: 0 });
    await expect(f.waitForReport(() => false, { timeoutMs: 100 })).rejects.toMatchObject({ code: "STREAM_TIMEOUT" });
    f.close();
    await f.done;
    await expect(f.waitForReport(() => false)).rejects.toMatchObject({ code: "STREAM_CLOSED" });

    const got: string[] = [];
    const sub = c.stream({
      onReport: (r) => got.push(r.report_id),
      onSnapshot: (s) => got.push(`s${s.report_id}`),
      onConnection: (e) => got.push(e.type),
    });
    while (got.length < 4) await delay(20);
    sub.close();
    await sub.done;
    expect(got).toEqual(["open", "s10", "11", "12"]);
    expect(sub.cursor).toBe("12");
  });

  it("snapshot(): the first snapshot event, then the stream is closed", async () => {
    server = await localServer((_req, res) => {
      sseStart(res);
      res.write(snapshotFrame("42"));
    });
    const s = await client(server).snapshot();
    expect(s.report_id).toBe("42");
    expect(s.snapshot.autopilot.status).toBe("idle");
  });
});

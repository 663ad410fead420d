import type { AgentReport, ReportEvent, Snapshot, SnapshotEvent } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { initialState, openAsks, parseStreamEvent, reduce, resolvedAsks, type StreamAction } from "./state.ts";

const tenant = { org_id: "acme", project_id: "nexus" };
const ts = "2026-02-03T09:00:00.000Z";

function emptySnapshot(): Snapshot {
  return {
    autopilot: { status: "idle", in_flight: 0 },
    worklog: [],
    asks: [],
    profile: { display_name: "Kim", timezone: "Europe/Berlin" },
    assistant: { persona: { name: "Nex" }, skin: { theme: "light" } },
    compliance: { risk_overrides: {}, policy_version: 0 },
  };
}

function snapshotEv(reportId: string, snapshot: Snapshot = emptySnapshot()): StreamAction {
  const event: SnapshotEvent = { snapshot, report_id: reportId, tenant, ts };
  return { kind: "snapshot", event };
}

function reportEv(
  reportId: string,
  report: AgentReport,
  causality: ReportEvent["causality"] = { correlation_id: "c-1", command_id: "cmd-1" },
): StreamAction {
  const event: ReportEvent = { report, report_id: reportId, causality, tenant, ts };
  return { kind: "report", event };
}

const accepted: AgentReport = {
  type: "command.accepted",
  status: "accepted",
  title: "Draft email",
  command: { command_id: "cmd-1", type: "draft_email.create" },
  risk_level: "GREEN",
};
const completed: AgentReport = {
  type: "command.completed",
  status: "done",
  title: "Draft ready",
  command: { command_id: "cmd-1", type: "draft_email.create" },
  result: { subject: "Re: offer", body: "Dear Kim,\n\nno, thanks." },
};

function run(actions: StreamAction[]) {
  return actions.reduce(reduce, initialState());
}

describe("console state", () => {
  it("starts connecting, with no snapshot", () => {
    const s = initialState();
    expect(s.connState).toBe("connecting");
    expect(s.snapshot).toBeNull();
    expect(s.lastId).toBeNull();
  });

  it("a snapshot replaces the whole state and sets the cursor", () => {
    const withWork = run([snapshotEv("10"), reportEv("11", accepted)]);
    expect(withWork.snapshot?.worklog).toHaveLength(1);
    const fresh = emptySnapshot();
    fresh.profile = { display_name: "Other" };
    const s = reduce(withWork, snapshotEv("20", fresh));
    expect(s.snapshot).toBe(fresh);
    expect(s.snapshot?.worklog).toHaveLength(0);
    expect(s.lastId).toBe(20);
  });

  it("a snapshot with a lower report_id (the stream was reset) still replaces the state", () => {
    const s = run([snapshotEv("100"), snapshotEv("3")]);
    expect(s.lastId).toBe(3);
  });

  it("applies a report with applyReport and advances the cursor", () => {
    const s = run([snapshotEv("10"), reportEv("11", accepted), reportEv("14", completed)]);
    expect(s.lastId).toBe(14);
    const w = s.snapshot?.worklog[0];
    expect(w?.command_id).toBe("cmd-1");
    expect(w?.status).toBe("done");
    expect(w?.result).toEqual(completed.type === "command.completed" ? completed.result : null);
    expect(s.snapshot?.autopilot).toEqual({ status: "idle", in_flight: 0 });
    expect(s.lastReport?.report_id).toBe("14");
  });

  it("autopilot follows the reports: running while in flight", () => {
    const s = run([snapshotEv("10"), reportEv("11", accepted)]);
    expect(s.snapshot?.autopilot).toEqual({ status: "running", in_flight: 1 });
  });

  it("a duplicate report (same report_id) is ignored and returns the same state object", () => {
    const s1 = run([snapshotEv("10"), reportEv("11", accepted)]);
    const s2 = reduce(s1, reportEv("11", accepted));
    expect(s2).toBe(s1);
    expect(s2.applied).toEqual(["11"]);
  });

  it("an older report (report_id at or below the cursor) is ignored", () => {
    const s1 = run([snapshotEv("10"), reportEv("11", accepted), reportEv("15", completed)]);
    // A late re-delivery of an earlier report must not move the entry back.
    const s2 = reduce(s1, reportEv("12", { ...accepted, title: "stale" }));
    expect(s2).toBe(s1);
    expect(s2.snapshot?.worklog[0]?.status).toBe("done");
    // Reports at or below the snapshot's id are ignored too.
    const s3 = run([snapshotEv("10"), reportEv("9", accepted), reportEv("10", accepted)]);
    expect(s3.snapshot?.worklog).toHaveLength(0);
    expect(s3.applied).toEqual([]);
  });

  it("compares report_ids as numbers, not strings", () => {
    const s = run([snapshotEv("9"), reportEv("10", accepted)]);
    expect(s.applied).toEqual(["10"]);
  });

  it("ignores reports before any snapshot", () => {
    const s = run([reportEv("11", accepted)]);
    expect(s.snapshot).toBeNull();
    expect(s.applied).toEqual([]);
  });

  it("keeps the list of applied report_ids in order, each once, across snapshots", () => {
    const s = run([
      snapshotEv("10"),
      reportEv("11", accepted),
      reportEv("11", accepted),
      reportEv("13", completed),
      snapshotEv("13"),
      reportEv("13", completed),
      reportEv("20", { ...completed, command: { command_id: "cmd-2", type: "draft_email.create" } }),
    ]);
    expect(s.applied).toEqual(["11", "13", "20"]);
  });

  it("CURSOR_EXPIRED marks a resync; the next snapshot replaces the state and shows resynced", () => {
    const before = run([{ kind: "open" }, snapshotEv("10"), reportEv("11", accepted)]);
    expect(before.connState).toBe("live");
    const lost = reduce(before, { kind: "disconnected" });
    expect(lost.connState).toBe("reconnecting");
    const reopened = reduce(lost, { kind: "open" });
    expect(reopened.connState).toBe("live");
    const expired = reduce(reopened, {
      kind: "error",
      event: { error: { code: "CURSOR_EXPIRED", message: "too old", recoverable: true }, ts },
    });
    expect(expired.resyncPending).toBe(true);
    expect(expired.connState).toBe("live");
    expect(expired.snapshot?.worklog).toHaveLength(1); // nothing replaced yet
    const fresh = reduce(expired, snapshotEv("500"));
    expect(fresh.connState).toBe("resynced");
    expect(fresh.resyncPending).toBe(false);
    expect(fresh.snapshot?.worklog).toHaveLength(0);
    expect(fresh.lastId).toBe(500);
    // Reports after the fresh snapshot apply as usual; the badge stays resynced until the connection changes.
    const after = reduce(fresh, reportEv("501", accepted));
    expect(after.applied).toEqual(["11", "501"]);
    expect(after.connState).toBe("resynced");
    expect(reduce(after, { kind: "disconnected" }).connState).toBe("reconnecting");
  });

  it("other SSE errors do not trigger a resync", () => {
    const s = reduce(run([snapshotEv("1")]), {
      kind: "error",
      event: { error: { code: "INTERNAL", message: "x", recoverable: true }, ts },
    });
    expect(s.resyncPending).toBe(false);
    expect(s.lastStreamError?.code).toBe("INTERNAL");
    expect(reduce(s, snapshotEv("2")).connState).toBe("live");
  });

  it("ping changes nothing", () => {
    const s = run([snapshotEv("1")]);
    expect(reduce(s, { kind: "ping" })).toBe(s);
  });

  it("reset forgets everything (tenant switch)", () => {
    const s = reduce(run([{ kind: "open" }, snapshotEv("10"), reportEv("11", accepted)]), { kind: "reset" });
    expect(s).toEqual(initialState());
  });

  it("asks: open ones by expiry, resolved ones newest first", () => {
    const ask = (id: string, exp: string, status?: "open" | "done") => ({
      ask_id: id,
      risk_level: "RED" as const,
      action: { type: "external_share.prepare", command_id: `c-${id}`, params: {} },
      expires_at: exp,
      status,
    });
    const snap = emptySnapshot();
    snap.asks = [
      ask("a", "2026-02-03T10:00:00Z"),
      ask("b", "2026-02-03T09:30:00Z"),
      ask("c", "2026-02-03T08:00:00Z", "done"),
      ask("d", "2026-02-03T08:00:00Z", "done"),
    ];
    expect(openAsks(snap).map((a) => a.ask_id)).toEqual(["b", "a"]);
    expect(resolvedAsks(snap).map((a) => a.ask_id)).toEqual(["d", "c"]);
  });
});

describe("parseStreamEvent", () => {
  it("parses snapshot, report, error and ping events", () => {
    const snap: SnapshotEvent = { snapshot: emptySnapshot(), report_id: "7", tenant, ts };
    expect(parseStreamEvent("snapshot", JSON.stringify(snap))).toMatchObject({
      kind: "snapshot",
      event: { report_id: "7" },
    });
    const rep = { report: accepted, report_id: "8", causality: { correlation_id: "c" }, tenant, ts };
    expect(parseStreamEvent("report", JSON.stringify(rep))).toMatchObject({
      kind: "report",
      event: { report_id: "8" },
    });
    const err = { error: { code: "CURSOR_EXPIRED", message: "m", recoverable: true }, ts };
    expect(parseStreamEvent("error", JSON.stringify(err))).toMatchObject({ kind: "error" });
    expect(parseStreamEvent("ping", JSON.stringify({ ts }))).toEqual({ kind: "ping" });
  });

  it("refuses bad JSON, bad shapes and unknown names, and says why", () => {
    const problems: string[] = [];
    const note = (p: { event: string; reason: string }) => problems.push(`${p.event}: ${p.reason}`);
    expect(parseStreamEvent("report", "{not json", note)).toBeNull();
    expect(parseStreamEvent("report", JSON.stringify({ report: { type: "nope" } }), note)).toBeNull();
    expect(parseStreamEvent("whatever", "{}", note)).toBeNull();
    expect(problems).toHaveLength(3);
    expect(problems[0]).toContain("not JSON");
  });
});

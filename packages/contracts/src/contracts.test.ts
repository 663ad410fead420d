import { describe, expect, it } from "vitest";
import {
  type AgentReport,
  applyReport,
  canonicalJson,
  DecideRequest,
  DraftEmailResult,
  ErrorCode,
  errorSpec,
  InvalidSubjectToken,
  normaliseCommandRequest,
  ProgressEvent,
  parseCursor,
  type ReportEvent,
  redactUrl,
  type Snapshot,
  subjects,
  tenantFromSubject,
} from "./index.ts";

const t = { org_id: "acme", project_id: "nexus" };

describe("subject builders", () => {
  it("build a tenant's purge filters that never reach another tenant", () => {
    expect(subjects.tenantFilter("cmd", t)).toBe("nexus.cmd.acme.nexus.>");
    expect(subjects.tenantFilter("report", t)).toBe("nexus.report.acme.nexus");
    expect(() => subjects.tenantFilter("cmd", { org_id: "*", project_id: "p" })).toThrow(InvalidSubjectToken);
  });
  it("build per-tenant subjects", () => {
    expect(subjects.report(t)).toBe("nexus.report.acme.nexus");
    expect(subjects.command(t, "5b2f-1")).toBe("nexus.cmd.acme.nexus.5b2f-1");
    expect(subjects.approvedAction(t, "5b2f-1")).toBe("nexus.cmd.acme.nexus.5b2f-1.approved");
    expect(subjects.approval(t, "a-1")).toBe("nexus.approval.acme.nexus.a-1");
    expect(subjects.caseAction(t)).toBe("nexus.notify.acme.nexus.case_action");
    expect(subjects.progress(t)).toBe("nexus.progress.acme.nexus");
    expect(tenantFromSubject("nexus.report.acme.nexus")).toEqual(t);
  });
  it("refuse tokens that could widen a subscription", () => {
    for (const bad of ["a.b", "*", ">", "a b", "", "x".repeat(65), "é"]) {
      expect(() => subjects.report({ org_id: bad, project_id: "p" })).toThrow(InvalidSubjectToken);
      expect(() => subjects.report({ org_id: "o", project_id: bad })).toThrow(InvalidSubjectToken);
      expect(() => subjects.command({ org_id: bad, project_id: "p" }, "x")).toThrow(InvalidSubjectToken);
      expect(() => subjects.progress({ org_id: bad, project_id: "p" })).toThrow(InvalidSubjectToken);
      expect(() => subjects.progress({ org_id: "o", project_id: bad })).toThrow(InvalidSubjectToken);
    }
    expect(() => subjects.approval(t, "a.>")).toThrow(InvalidSubjectToken);
    expect(() => subjects.command(t, "x.*")).toThrow(InvalidSubjectToken);
    expect(() => subjects.command(t, "a.b")).toThrow(InvalidSubjectToken);
  });
});

describe("error catalogue", () => {
  it("maps every code to a status and a recoverable flag", () => {
    for (const code of ErrorCode.options) {
      const s = errorSpec(code);
      expect(s.status).toBeGreaterThanOrEqual(400);
      expect(typeof s.recoverable).toBe("boolean");
    }
    expect(errorSpec("IDEMPOTENCY_CONFLICT").status).toBe(409);
    expect(errorSpec("DEPENDENCY_UNAVAILABLE")).toMatchObject({ status: 503, recoverable: true });
  });
});

describe("language-model shapes", () => {
  it("the LLM failure codes are in the catalogue; only the budget and bad output are not recoverable", () => {
    expect(errorSpec("LLM_TIMEOUT")).toMatchObject({ status: 504, recoverable: true });
    expect(errorSpec("LLM_RATE_LIMITED")).toMatchObject({ status: 429, recoverable: true });
    expect(errorSpec("LLM_UNAVAILABLE")).toMatchObject({ status: 503, recoverable: true });
    expect(errorSpec("LLM_BUDGET_EXCEEDED")).toMatchObject({ recoverable: false });
    expect(errorSpec("LLM_BAD_OUTPUT")).toMatchObject({ recoverable: false });
  });

  it("a draft result carries language and provider; an older one without them still parses", () => {
    expect(DraftEmailResult.parse({ subject: "S", body: "B", language: "ko", provider: "offline" })).toEqual({
      subject: "S",
      body: "B",
      language: "ko",
      provider: "offline",
    });
    expect(DraftEmailResult.safeParse({ subject: "S", body: "B" }).success).toBe(true);
  });

  it("a progress event has no report_id and refuses a blank stage", () => {
    const ev = {
      progress: { command_id: "c1", stage: "drafting", percent: 40, text_delta: "안녕" },
      causality: { correlation_id: "c-1", command_id: "c1" },
      tenant: t,
      ts: "2026-03-02T08:00:00.000Z",
    };
    expect(ProgressEvent.parse(ev)).toEqual(ev);
    expect("report_id" in ProgressEvent.shape).toBe(false);
    expect(ProgressEvent.safeParse({ ...ev, progress: { command_id: "c1", stage: "" } }).success).toBe(false);
    expect(ProgressEvent.safeParse({ ...ev, progress: { command_id: "c1", stage: "x", percent: 101 } }).success).toBe(
      false,
    );
  });
});

describe("request dialects", () => {
  it("normalise the older command dialect to the canonical one", () => {
    const r = normaliseCommandRequest({
      command_type: "doc.summary.create",
      params: { text: "x" },
      correlation_id: "c",
    });
    expect(r).toEqual({
      ok: true,
      command: {
        command_id: undefined,
        type: "doc.summary.create",
        context: {},
        params: { text: "x" },
        surface: "legacy",
        correlation_id: "c",
      },
    });
    const c = normaliseCommandRequest({
      type: "doc.summary.create",
      params: { text: "x" },
      client_context: { correlation_id: "d" },
    });
    expect(c.ok && c.command.correlation_id).toBe("d");
    expect(normaliseCommandRequest({ params: {} }).ok).toBe(false);
  });
  it("read deny/reason as reject/note", () => {
    expect(DecideRequest.parse({ decision: "deny", reason: "no" })).toMatchObject({ decision: "reject", note: "no" });
    expect(DecideRequest.safeParse({ decision: "maybe" }).success).toBe(false);
  });
});

describe("cursors and canonical JSON", () => {
  it("parse only decimal report ids", () => {
    expect(parseCursor("4711")).toBe(4711);
    expect(parseCursor("0")).toBe(0);
    for (const bad of ["", "-1", "01", "1e3", "abc", "99999999999999999999"]) expect(parseCursor(bad)).toBeNull();
  });
  it("canonical JSON ignores key order", () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { y: 1, x: 2 }], c: null } })).toBe(
      canonicalJson({ a: { c: null, d: [2, { x: 2, y: 1 }] }, b: 1 }),
    );
  });
});

describe("applyReport", () => {
  const empty: Snapshot = {
    autopilot: { status: "idle", in_flight: 0 },
    worklog: [],
    asks: [],
    profile: {},
    assistant: { persona: {}, skin: {} },
    compliance: { risk_overrides: {}, policy_version: 0 },
  };
  const ev = (id: number, report: AgentReport): ReportEvent => ({
    report,
    report_id: String(id),
    causality: { correlation_id: "c", command_id: "cmd-1" },
    tenant: t,
    ts: `2026-01-01T00:00:0${id}.000Z`,
  });
  const cmd = { command_id: "cmd-1", type: "doc.summary.create" };
  const accepted = ev(1, { type: "command.accepted", status: "accepted", title: "A", command: cmd });
  const started = ev(2, { type: "command.started", status: "running", title: "S", command: cmd });
  const done = ev(3, { type: "command.completed", status: "done", title: "D", command: cmd, result: { summary: "x" } });

  it("tenant.purged resets the state to empty (settings versions too)", () => {
    let s = applyReport(applyReport(empty, accepted), {
      ...ev(4, {
        type: "settings.updated",
        status: "done",
        title: "P",
        section: "profile",
        values: { display_name: "Kim" },
        version: 3,
      }),
    });
    expect(s.profile).toEqual({ display_name: "Kim" });
    s = applyReport(
      s,
      ev(5, {
        type: "tenant.purged",
        status: "done",
        title: "Tenant data erased",
        purge: { reports_through: "4", purged_by: "root", counts: {} },
      }),
    );
    expect(s).toEqual(empty);
  });

  it("moves the worklog and autopilot forward", () => {
    let s = applyReport(empty, accepted);
    expect(s.autopilot).toEqual({ status: "running", in_flight: 1 });
    s = applyReport(applyReport(s, started), done);
    expect(s.worklog[0]).toMatchObject({ status: "done", result: { summary: "x" } });
    expect(s.autopilot.status).toBe("idle");
  });
  it("is harmless to re-apply (a snapshot read after its report_id stays consistent)", () => {
    const s = [accepted, started, done].reduce(applyReport, empty);
    const again = [accepted, started, done, started, accepted].reduce(applyReport, s);
    expect(again.worklog).toEqual(s.worklog);
  });
  it("waits for approval while an ask is open", () => {
    const created = ev(4, {
      type: "ask.created",
      status: "pending_approval",
      title: "Ask",
      command: cmd,
      ask: {
        ask_id: "a1",
        risk_level: "RED",
        action: { type: "x", command_id: "cmd-1", params: {} },
        expires_at: "2030-01-01T00:00:00Z",
      },
    });
    const s = applyReport(applyReport(empty, accepted), created);
    expect(s.autopilot.status).toBe("waiting_approval");
    const cancelled = applyReport(
      s,
      ev(5, { type: "ask.cancelled", status: "cancelled", title: "C", command: cmd, ask: { ask_id: "a1" } }),
    );
    expect(cancelled.asks[0]!.status).toBe("cancelled");
    expect(cancelled.worklog[0]).toMatchObject({ status: "cancelled", title: "C" });
    expect(cancelled.autopilot.status).toBe("idle");
  });
});

describe("redactUrl", () => {
  it("redacts credentials in any query, and the OIDC response only on the console's redirect", () => {
    expect(redactUrl("/agent/reports/stream?ticket=t1.abc&x=1")).toBe("/agent/reports/stream?ticket=[redacted]&x=1");
    expect(redactUrl("GET /s?access_token=eyJ&token=a")).toBe("GET /s?access_token=[redacted]&token=[redacted]");
    expect(redactUrl("/ui/?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz&iss=https%3A%2F%2Fidp")).toBe(
      "/ui/?code=[redacted]&state=[redacted]&iss=https%3A%2F%2Fidp",
    );
    expect(redactUrl("/admin/dead-letters?code=RETRIES_EXHAUSTED")).toBe("/admin/dead-letters?code=RETRIES_EXHAUSTED");
  });
});

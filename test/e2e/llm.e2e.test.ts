/**
 * The language-model layer end to end: the four services as processes, talking to local
 * servers that speak the OpenAI and Anthropic wire formats (127.0.0.1).
 *
 * With `LLM_PRIMARY_PROVIDER=openai` and `OPENAI_BASE_URL` at an OpenAI-compatible server:
 * drafts come from that server with live progress on the SSE stream; the fallback provider
 * answers while it fails and its breaker stays open; budgets stop spending. With no key, a
 * Korean brief gets a Korean draft from the offline provider.
 */
import { type ApiError, type DraftEmailResult, ProgressEvent, type Tenant } from "@nexus/contracts";
import { type FakeLlmServer, type ReportEventOf, type SseClient, startFakeLlm, uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

/** The command-worker's breaker cooldown in this file, ms. */
const COOLDOWN_MS = 5000;

const DRAFT = {
  subject: "Re: your offer",
  body: "Hello Kim,\n\nThank you for the offer. After careful thought we will not take it up this time.\n\nBest regards,\nAlex Example",
};
const BACKUP = {
  subject: "Your offer",
  body: "Dear Kim,\n\nWe must decline your offer.\n\nKind regards,\nAlex Example",
};

async function draft(e: E2E, sse: SseClient, t: Tenant, brief: string) {
  const body = command("draft_email.create", { to: "kim@example.com", brief });
  const r = await e.call("POST", "/sidecar/command", t, body);
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  const end = await Promise.race([
    sse.waitForReport("command.completed", { command_id: body.command_id }, 20_000),
    sse.waitForReport("command.failed", { command_id: body.command_id }, 20_000),
  ]);
  return { id: body.command_id, end };
}

/** The end of a draft: its `command.completed` or `command.failed` report. */
type DraftEnd = ReportEventOf<"command.completed" | "command.failed">;

/** The draft a `command.completed` report carries (`undefined` for `command.failed`). */
function draftOf(end: DraftEnd): DraftEmailResult | undefined {
  return end.report.type === "command.completed" ? (end.report.result as DraftEmailResult) : undefined;
}

/** The error a `command.failed` report carries (`undefined` for `command.completed`). */
function failureOf(end: DraftEnd): ApiError | undefined {
  return end.report.type === "command.failed" ? end.report.error : undefined;
}

describe("with an OpenAI-compatible server as primary and Anthropic as fallback", () => {
  let e: E2E;
  let openai: FakeLlmServer;
  let anthropic: FakeLlmServer;

  beforeAll(async () => {
    openai = await startFakeLlm({
      kind: "ok",
      text: JSON.stringify(DRAFT),
      tokensIn: 100,
      tokensOut: 100,
      chunks: 12,
      delayMs: 40,
    });
    anthropic = await startFakeLlm({ kind: "ok", text: JSON.stringify(BACKUP), tokensIn: 100, tokensOut: 100 });
    e = await startE2E({
      serviceEnv: {
        "command-worker": {
          LLM_PRIMARY_PROVIDER: "openai",
          OPENAI_BASE_URL: `${openai.url}/v1`,
          OPENAI_MODEL: "gpt-4o-mini",
          LLM_FALLBACK_PROVIDERS: "anthropic",
          ANTHROPIC_API_KEY: "test-key",
          ANTHROPIC_BASE_URL: `${anthropic.url}/v1`,
          ANTHROPIC_MODEL: "claude-3-5-haiku-latest",
          LLM_REQUIRED: "true",
          LLM_MAX_RETRIES: "0",
          BREAKER_FAIL_THRESHOLD: "2",
          BREAKER_WINDOW_SECONDS: "60",
          // Long enough that a loaded machine cannot end it before the "open" check below.
          BREAKER_COOLDOWN_SECONDS: String(COOLDOWN_MS / 1000),
          // $0.20 per primary draft (100 + 100 tokens at $1000/Mtok); the fallback is free here.
          LLM_PRICES: JSON.stringify({
            "gpt-4o-mini": { input_per_mtok: 1000, output_per_mtok: 1000 },
            "claude-3-5-haiku": { input_per_mtok: 0, output_per_mtok: 0 },
          }),
          LLM_BUDGET_DAILY_USD: "0.5",
          LLM_BUDGET_SOFT_PCT: "50",
          LLM_BUDGET_HARD_PCT: "100",
          LLM_PROGRESS_INTERVAL_MS: "100",
          MAX_ATTEMPTS: "2",
          RETRY_BASE_MS: "50",
          RETRY_MAX_MS: "100",
        },
      },
    });
  });
  afterAll(async () => {
    await e?.close();
    await openai?.close();
    await anthropic?.close();
  });

  it("drafts come from the server, with live progress events (no id) before the completed report", async () => {
    const t = uniqueTenant("e2e-llm");
    const sse = await e.stream(t);
    const { id, end } = await draft(e, sse, t, "Politely decline the offer");
    expect(end.report.type).toBe("command.completed");
    expect(draftOf(end)).toEqual({ ...DRAFT, language: "en", provider: "openai", model: "gpt-4o-mini" });
    expect(openai.requests.at(-1)?.body.messages?.[1]?.content).toContain("Politely decline the offer");

    const progress = sse.events.filter((ev) => ev.event === "progress");
    expect(progress.length).toBeGreaterThan(1);
    for (const p of progress) {
      expect(p.id).toBeUndefined();
      const ev = ProgressEvent.parse(p.data);
      expect(ev.progress.command_id).toBe(id);
      expect(ev.tenant).toEqual(t);
    }
    expect(progress.map((p) => p.data.progress.text_delta ?? "").join("")).toBe(DRAFT.body);
    // The ids the client would resume from are the reports' only.
    const withIds = sse.events.filter((ev) => ev.id !== undefined).map((ev) => ev.event);
    expect(new Set(withIds)).toEqual(new Set(["snapshot", "report"]));
  });

  it("falls back to Anthropic while the server fails, skips it while its breaker is open, and returns to it after the cooldown", async () => {
    const t = uniqueTenant("e2e-brk");
    const sse = await e.stream(t);
    openai.script({ kind: "status", status: 503 });
    const before = openai.requests.length;
    for (const brief of ["Decline the offer", "Decline it again"]) {
      const { end } = await draft(e, sse, t, brief);
      expect(draftOf(end)).toMatchObject({ provider: "anthropic", model: "claude-3-5-haiku-latest" });
    }
    const openedBy = Date.now(); // the breaker opened during the second draft
    expect(openai.requests.length - before).toBe(2);
    // Breaker open: the primary is not contacted.
    const third = await draft(e, sse, t, "And once more");
    expect(draftOf(third.end)?.provider).toBe("anthropic");
    expect(openai.requests.length - before).toBe(2);
    // After the cooldown a trial call reaches the recovered server and closes the breaker.
    openai.script({ kind: "ok", text: JSON.stringify(DRAFT), tokensIn: 100, tokensOut: 100 });
    await new Promise((r) => setTimeout(r, Math.max(0, openedBy + COOLDOWN_MS + 200 - Date.now())));
    const fourth = await draft(e, sse, t, "Decline the offer finally");
    expect(draftOf(fourth.end)?.provider).toBe("openai");
    const metrics = await (await fetch(`http://127.0.0.1:${e.stack.ports["command-worker"]}/metrics`)).text();
    expect(metrics).toMatch(/nexus_llm_breaker_state\{provider="openai"[^}]*\} 0\n/);
    expect(metrics).toMatch(/nexus_llm_fallbacks_total\{from="openai",code="LLM_UNAVAILABLE"[^}]*\} [1-9]/);
  });

  it("budgets stop spending: a warning at the soft threshold, then LLM_BUDGET_EXCEEDED with no call made", async () => {
    const t = uniqueTenant("e2e-bud");
    const sse = await e.stream(t);
    const first = await draft(e, sse, t, "Draft one");
    expect(first.end.report.type).toBe("command.completed");
    const second = await draft(e, sse, t, "Draft two"); // $0.40 ≥ 50% of $0.50
    expect(second.end.report.type).toBe("command.completed");
    const warning = await sse.waitForReport("risk.warning", { command_id: second.id });
    expect(warning.report.summary).toMatch(/\$0\.40 of its \$0\.50/);
    const third = await draft(e, sse, t, "Draft three"); // $0.40 < $0.50: allowed → $0.60
    expect(third.end.report.type).toBe("command.completed");
    const calls = openai.requests.length;
    const fourth = await draft(e, sse, t, "Draft four");
    expect(fourth.end.report.type).toBe("command.failed");
    expect(failureOf(fourth.end)?.code).toBe("LLM_BUDGET_EXCEEDED");
    expect(openai.requests.length).toBe(calls);
    expect(sse.reports().filter((r) => r.report.type === "risk.warning")).toHaveLength(1);
  });
});

describe("with no key (the offline provider)", () => {
  let e: E2E;
  beforeAll(async () => {
    e = await startE2E();
  });
  afterAll(async () => {
    await e?.close();
  });

  it("a Korean brief gets a Korean draft signed with the profile's display name", async () => {
    const t = uniqueTenant("e2e-ko");
    const sse = await e.stream(t);
    const p = await e.call("PATCH", "/profile", t, { display_name: "이민준" }, { "x-correlation-id": "c-profile" });
    expect(p.status).toBe(202);
    await sse.waitFor(
      (evs) => evs.some((x) => x.event === "report" && x.data.report.type === "settings.updated"),
      10_000,
      "profile",
    );
    const brief = "공급업체의 제안을 정중히 거절해 주세요";
    const { end } = await draft(e, sse, t, brief);
    expect(end.report.type).toBe("command.completed");
    const result = draftOf(end)!;
    expect(result).toMatchObject({ language: "ko", provider: "offline" });
    expect(result.subject).not.toBe(brief);
    expect(result.body).not.toBe(brief);
    expect(result.body.startsWith("안녕하세요, Kim님.")).toBe(true);
    expect(result.body).toContain("거절하고자 합니다.");
    expect(result.body.endsWith("감사합니다.\n이민준 드림")).toBe(true);
    expect(result.body).not.toMatch(/Dear|Yours sincerely/);
  });
});

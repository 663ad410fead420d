/**
 * The command-worker's language-model wiring on real NATS and Postgres: the start-up check
 * (LLM_REQUIRED), drafts from an OpenAI-compatible local server with live progress on core
 * NATS, the soft-budget warning report and the hard refusal, retries then the handler's own
 * code, profile and persona from tenant_settings, and the coalescing of live progress.
 */
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type CommandMessage, ProgressEvent, subjects, type Tenant } from "@nexus/contracts";
import { commandBodyHash, commandMsgId, updateSettings } from "@nexus/core";
import { createLlmEvents, OutboxShareConnector } from "@nexus/handlers";
import { buildHeaders, connectNats, runWorker, type Worker } from "@nexus/messaging";
import { parseConfig } from "@nexus/runtime";
import {
  createTestDatabase,
  type FakeLlmServer,
  natsForTest,
  REPO_ROOT,
  reportTypesOf,
  startFakeLlm,
  type TestDatabase,
  type TestNats,
  tenantReports,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommandWorkerConfig } from "../src/config.ts";
import { commandWorkerSpec } from "../src/jobs.ts";
import { createLiveProgress } from "../src/live-progress.ts";
import { createLlm, LlmConfigError, loadPrices, planLlmChain } from "../src/llm.ts";
import { meterLlmEvents } from "../src/llm-metrics.ts";

const logger = pino({ level: "silent" });
const cfg = (env: Record<string, string>) => parseConfig(CommandWorkerConfig, env);

describe("start-up check", () => {
  it("LLM_REQUIRED=true with no usable provider is refused, naming what is missing", () => {
    expect(() => planLlmChain(cfg({ LLM_REQUIRED: "true" }))).toThrow(/LLM_PRIMARY_PROVIDER is offline/);
    expect(() => planLlmChain(cfg({ LLM_REQUIRED: "true", LLM_PRIMARY_PROVIDER: "anthropic" }))).toThrow(
      /anthropic: ANTHROPIC_API_KEY is not set/,
    );
    const e = (() => {
      try {
        planLlmChain(cfg({ LLM_REQUIRED: "true", LLM_PRIMARY_PROVIDER: "gemini", LLM_FALLBACK_PROVIDERS: "openai" }));
      } catch (err) {
        return err as Error;
      }
    })();
    expect(e).toBeInstanceOf(LlmConfigError);
    expect(e?.message).toMatch(/GEMINI_API_KEY is not set/);
    expect(e?.message).toMatch(/OPENAI_API_KEY is not set \(nor OPENAI_BASE_URL/);
  });

  it("plans usable providers in order; offline may only end the chain; without LLM_REQUIRED unusable ones are skipped", () => {
    const plan = planLlmChain(
      cfg({
        LLM_PRIMARY_PROVIDER: "anthropic",
        ANTHROPIC_API_KEY: "sk-ant",
        LLM_FALLBACK_PROVIDERS: "gemini, openai,offline",
        OPENAI_BASE_URL: "http://127.0.0.1:11434/v1",
      }),
    );
    expect(plan.specs.map((s) => [s.name, s.model])).toEqual([
      ["anthropic", "claude-3-5-haiku-latest"],
      ["openai", "gpt-4o-mini"],
    ]);
    expect(plan.skipped).toEqual(["gemini: GEMINI_API_KEY is not set"]);
    expect(plan.offlineFallback).toBe(true);
    expect(() => planLlmChain(cfg({ LLM_FALLBACK_PROVIDERS: "openai", OPENAI_API_KEY: "k" }))).toThrow(
      /"offline" can only end the chain/,
    );
    expect(planLlmChain(cfg({ LLM_PRIMARY_PROVIDER: "anthropic" }))).toEqual({
      specs: [],
      offlineFallback: true,
      skipped: ["anthropic: ANTHROPIC_API_KEY is not set"],
    });
  });

  it("refuses a malformed price table", () => {
    expect(() => loadPrices({ LLM_PRICES: "{" })).toThrow(/LLM_PRICES: not JSON/);
    expect(() => loadPrices({ LLM_PRICES: '{"gpt-x":{"input_per_mtok":-1,"output_per_mtok":1}}' })).toThrow(
      LlmConfigError,
    );
    expect(loadPrices({ LLM_PRICES: '{"gpt-x":{"input_per_mtok":1,"output_per_mtok":2}}' })["gpt-x"]).toEqual({
      input_per_mtok: 1,
      output_per_mtok: 2,
    });
  });

  it("the worker process exits at start-up with LLM_REQUIRED=true and no provider, before connecting anywhere", () => {
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "services/command-worker/src/main.ts")], {
      env: {
        PATH: process.env.PATH ?? "",
        LLM_REQUIRED: "true",
        LLM_PRIMARY_PROVIDER: "anthropic",
        NATS_URL: "nats://127.0.0.1:1",
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
      },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.status).not.toBeNull();
    expect(r.stderr).toMatch(
      /LLM_REQUIRED=true: no configured provider is usable: anthropic: ANTHROPIC_API_KEY is not set/,
    );
  });
});

describe("live progress coalescing", () => {
  it("merges deltas of a stage within the interval, flushes on a stage change and on close, loses nothing", async () => {
    const sent: ProgressEvent[] = [];
    const t = { org_id: "o", project_id: "p" };
    const live = createLiveProgress(
      {
        nc: {
          publish: (s, p) => {
            expect(s).toBe("nexus.progress.o.p");
            sent.push(ProgressEvent.parse(JSON.parse(p)));
          },
        },
        intervalMs: 100,
        logger,
      },
      t,
      "cmd-1",
      { correlation_id: "c-1", command_id: "cmd-1" },
    );
    const text = Array.from({ length: 200 }, (_, i) => `w${i} `);
    const started = Date.now();
    for (const [i, w] of text.entries()) {
      live.push({ stage: "drafting", text_delta: w, percent: Math.floor(i / 2) });
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 10));
    }
    live.push({ stage: "done", percent: 100 });
    live.close();
    const elapsed = Date.now() - started;
    const drafting = sent.filter((s) => s.progress.stage === "drafting");
    expect(drafting.map((s) => s.progress.text_delta).join("")).toBe(text.join(""));
    // at most one message per 100 ms interval per stage (plus the first one), far fewer than 200 pushes
    expect(drafting.length).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 1);
    expect(drafting.length).toBeLessThan(20);
    expect(sent.at(-1)?.progress).toEqual({ command_id: "cmd-1", stage: "done", percent: 100 });
    expect(sent.every((s) => s.causality.command_id === "cmd-1" && s.tenant.org_id === "o")).toBe(true);
    live.push({ stage: "late", text_delta: "x" });
    await new Promise((r) => setTimeout(r, 150));
    expect(sent.some((s) => s.progress.stage === "late")).toBe(false);
  });
});

describe("drafts through the worker with an OpenAI-compatible server", () => {
  let nats: TestNats;
  let tdb: TestDatabase;
  let nc: NatsConnection;
  let worker: Worker;
  let llmServer: FakeLlmServer;
  const registry = new Registry();
  const js = () => jetstream(nc);
  const ANSWER = {
    subject: "제안에 대한 회신",
    body: "안녕하세요, Kim님.\n\n보내 주신 제안을 검토했으나 이번에는 함께하기 어렵겠습니다.\n\n감사합니다.\n이민준 드림",
  };

  beforeAll(async () => {
    nats = await natsForTest();
    tdb = await createTestDatabase();
    nc = await connectNats({ url: nats.url, name: "command-worker-llm-test", logger });
    llmServer = await startFakeLlm({
      kind: "ok",
      text: JSON.stringify(ANSWER),
      tokensIn: 400,
      tokensOut: 100,
      chunks: 10,
      delayMs: 30,
    });
    const config = cfg({
      LLM_PRIMARY_PROVIDER: "openai",
      OPENAI_BASE_URL: `${llmServer.url}/v1`,
      OPENAI_MODEL: "gpt-4o-mini",
      LLM_MAX_RETRIES: "0",
      // gpt-4o-mini default price: 400 × 0.15 + 100 × 0.60 per Mtok = $0.00012 per draft.
      LLM_BUDGET_DAILY_USD: "0.0003",
      LLM_BUDGET_SOFT_PCT: "50",
      LLM_BUDGET_HARD_PCT: "100",
      LLM_PROGRESS_INTERVAL_MS: "50",
    });
    const events = createLlmEvents();
    const { llm } = createLlm(config, { db: tdb.db, logger, events });
    meterLlmEvents(events, registry, llm.providers);
    worker = await runWorker({
      js: js(),
      logger,
      spec: commandWorkerSpec({
        db: tdb.db,
        js: js(),
        llm,
        live: { nc, intervalMs: config.LLM_PROGRESS_INTERVAL_MS, logger },
        share: new OutboxShareConnector(tdb.db),
        now: () => new Date(),
        config: { ASK_TTL_SECONDS: 3600, PUBLISH_TIMEOUT_MS: 5000, FAULT_INJECT_HANDLER_DELAY_MS: 0 },
      }),
      maxAttempts: 3,
      retry: { baseMs: 20, maxMs: 60 },
    });
  });
  afterAll(async () => {
    await worker?.stop(1000);
    await nc?.close();
    await llmServer?.close();
    await tdb?.drop();
    await nats?.stop();
  });

  function commandOf(t: Tenant, params: Record<string, unknown>): CommandMessage {
    const type = "draft_email.create";
    return {
      v: 1,
      kind: "command",
      tenant: t,
      command_id: randomUUID(),
      type,
      context: {},
      params,
      correlation_id: `c-${randomUUID().slice(0, 8)}`,
      accepted_at: new Date().toISOString(),
      principal: "user-1",
      body_hash: commandBodyHash({ type, context: {}, params }),
    };
  }
  async function send(m: CommandMessage) {
    const msgId = commandMsgId(m.tenant, m.command_id);
    await js().publish(subjects.command(m.tenant, m.command_id), JSON.stringify(m), {
      msgID: msgId,
      headers: buildHeaders({ tenant: m.tenant, msgId, correlationId: m.correlation_id }),
    });
  }
  const until = async (t: Tenant, commandId: string, type: string) =>
    waitFor(async () => reportTypesOf(await tenantReports(js(), t), commandId).includes(type), 15_000, type);

  it("drafts from the server with the tenant's profile and persona, streams live progress, warns at the soft budget, refuses at the hard one", async () => {
    const t = uniqueTenant("wl");
    await tdb.db.transaction().execute(async (tx) => {
      await updateSettings(tx, t, "profile", () => ({ display_name: "이민준", locale: "ko" }), {
        now: new Date(),
        correlationId: "c-p",
      });
      await updateSettings(tx, t, "persona", () => ({ tone: "formal", instructions: "Keep it short." }), {
        now: new Date(),
        correlationId: "c-q",
      });
    });
    const live: ProgressEvent[] = [];
    const sub = nc.subscribe(subjects.progress(t), {
      callback: (_e, msg) => {
        live.push(ProgressEvent.parse(msg.json()));
      },
    });

    const m1 = commandOf(t, { to: "kim@example.com", brief: "Decline the vendor's offer politely" });
    await send(m1);
    await until(t, m1.command_id, "command.completed");
    const reports = await tenantReports(js(), t);
    const done = reports.find((r) => r.report.type === "command.completed" && r.causality.command_id === m1.command_id);
    expect((done?.report as { result: unknown } | undefined)?.result).toEqual({
      ...ANSWER,
      language: "ko",
      provider: "openai",
      model: "gpt-4o-mini",
    });
    expect(reportTypesOf(reports, m1.command_id)).toEqual(["command.accepted", "command.started", "command.completed"]);

    // The request: the profile's locale picked Korean, the persona's tone formal; user text only in the user message.
    const [system, user] = (llmServer.requests.at(-1)?.body.messages ?? []).map((m) => m.content);
    expect(system).toContain("Korean (language tag ko)");
    expect(system).toContain("formal");
    expect(system).not.toContain("Keep it short.");
    expect(user).toContain("Decline the vendor's offer politely");
    expect(user).toContain("Keep it short.");
    expect(user).toContain("이민준");

    await waitFor(() => live.some((p) => p.progress.text_delta), 5000, "live deltas");
    const mine = live.filter((p) => p.progress.command_id === m1.command_id);
    expect(mine.length).toBeGreaterThan(1);
    expect(mine.length).toBeLessThan(12);
    expect(mine.map((p) => p.progress.text_delta ?? "").join("")).toBe(ANSWER.body);
    expect(mine.every((p) => p.causality.correlation_id === m1.correlation_id && p.tenant.org_id === t.org_id)).toBe(
      true,
    );

    // Second draft: $0.00024 ≥ 50% of $0.0003 → one risk.warning about the budget.
    const m2 = commandOf(t, { brief: "Say thanks" });
    await send(m2);
    await until(t, m2.command_id, "command.completed");
    const warning = (await tenantReports(js(), t)).find((r) => r.report.type === "risk.warning");
    expect(warning?.causality.command_id).toBe(m2.command_id);
    expect(warning?.report.title).toMatch(/budget 80% used/);

    // Third: $0.00024 < $0.0003 still allowed → $0.00036; fourth is refused without a request.
    const m3 = commandOf(t, { brief: "Say thanks again" });
    await send(m3);
    await until(t, m3.command_id, "command.completed");
    const before = llmServer.requests.length;
    const m4 = commandOf(t, { brief: "One more" });
    await send(m4);
    await until(t, m4.command_id, "command.failed");
    expect(llmServer.requests.length).toBe(before);
    const failed = (await tenantReports(js(), t)).find((r) => r.report.type === "command.failed");
    expect((failed?.report as { error: { code: string } } | undefined)?.error.code).toBe("LLM_BUDGET_EXCEEDED");
    expect((await tenantReports(js(), t)).filter((r) => r.report.type === "risk.warning")).toHaveLength(1);

    const ledger = await tdb.db.selectFrom("llm_cost_ledger").selectAll().where("org_id", "=", t.org_id).execute();
    expect(ledger.map((l) => [l.provider, l.model, l.tokens_in, l.tokens_out, Number(l.cost_usd)])).toEqual(
      Array.from({ length: 3 }, () => ["openai", "gpt-4o-mini", 400, 100, 0.00012]),
    );
    const metrics = await registry.metrics();
    expect(metrics).toMatch(
      /nexus_llm_calls_total\{provider="openai",model="gpt-4o-mini",task="draft_email",outcome="ok"\} \d+/,
    );
    expect(metrics).toMatch(/nexus_llm_tokens_total\{provider="openai",model="gpt-4o-mini",direction="in"\} \d+/);
    expect(metrics).toMatch(/nexus_llm_breaker_state\{provider="openai"\} 0/);
    expect(metrics).not.toMatch(/org_id|project_id/);
    sub.unsubscribe();
  });

  it("a provider that keeps failing: the worker retries, then fails the command with the handler's own code", async () => {
    const t = uniqueTenant("wf");
    llmServer.script({ kind: "status", status: 503 });
    try {
      const m = commandOf(t, { brief: "Decline" });
      await send(m);
      await until(t, m.command_id, "command.failed");
      const failed = (await tenantReports(js(), t)).find((r) => r.report.type === "command.failed");
      expect((failed?.report as { error: { code: string; message: string } } | undefined)?.error).toMatchObject({
        code: "LLM_UNAVAILABLE",
        message: expect.stringMatching(/after 3 attempts/),
      });
    } finally {
      llmServer.script({ kind: "ok", text: JSON.stringify(ANSWER), tokensIn: 400, tokensOut: 100 });
    }
  });
});

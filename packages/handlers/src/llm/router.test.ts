/**
 * The language-model router against a local server speaking each provider's real wire format
 * (testkit `startFakeLlm`), with the Postgres ledger: streaming, retries honouring Retry-After,
 * 5xx, timeouts, truncated streams, fallback, the circuit breaker, budgets, ledger and audit.
 */
import type { Tenant } from "@nexus/contracts";
import { createTestDatabase, type FakeLlmServer, startFakeLlm, type TestDatabase, uniqueTenant } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { z } from "zod";
import { HandlerError } from "../handler.ts";
import type { LlmCall } from "./client.ts";
import { createLlmEvents, type LlmEventMap } from "./events.ts";
import { dbLlmLedger } from "./ledger.ts";
import { createModelProvider, type ModelProviderName } from "./providers.ts";
import { estimateTokens, LlmRouter, type LlmRouterOptions } from "./router.ts";

let tdb: TestDatabase;
const servers: FakeLlmServer[] = [];
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => {
  for (const s of servers) await s.close();
  await tdb?.drop();
});

async function server(...replies: Parameters<typeof startFakeLlm>): Promise<FakeLlmServer> {
  const s = await startFakeLlm(...replies);
  servers.push(s);
  return s;
}

const BASE_PATH: Record<ModelProviderName, string> = { openai: "/v1", anthropic: "/v1", gemini: "/v1beta" };
const MODEL: Record<ModelProviderName, string> = {
  openai: "gpt-test",
  anthropic: "claude-test",
  gemini: "gemini-test",
};

function provider(name: ModelProviderName, s: FakeLlmServer) {
  return createModelProvider({
    name,
    model: MODEL[name],
    apiKey: `key-${name}`,
    baseUrl: `${s.url}${BASE_PATH[name]}`,
  });
}

const Answer = z.object({ subject: z.string().min(1), body: z.string().min(1) });
const ANSWER = { subject: "Your offer", body: "Dear Kim,\n\nThank you — we will decline.\n\nBest,\nAlex" };

function router(o: Partial<LlmRouterOptions> & Pick<LlmRouterOptions, "providers">) {
  const events = createLlmEvents();
  const seen = {
    breaker: [] as LlmEventMap["llm:breaker"][0][],
    fallback: [] as LlmEventMap["llm:fallback"][0][],
    budget: [] as LlmEventMap["llm:budget"][0][],
  };
  events.on("llm:breaker", (e) => seen.breaker.push(e));
  events.on("llm:fallback", (e) => seen.fallback.push(e));
  events.on("llm:budget", (e) => seen.budget.push(e));
  const r = new LlmRouter({
    offlineFallback: false,
    timeoutMs: 5000,
    maxRetries: 2,
    retryBaseMs: 10,
    retryMaxMs: 50,
    maxRetryAfterMs: 5000,
    breaker: { windowMs: 60_000, failThreshold: 5, cooldownMs: 30_000 },
    prices: { "*": { input_per_mtok: 10, output_per_mtok: 20 } },
    audit: { enabled: true, content: false },
    ledger: dbLlmLedger(tdb.db),
    logger: pino({ level: "silent" }),
    events,
    ...o,
  });
  return { r, seen };
}

function call(t: Tenant, extra: Partial<LlmCall> = {}): LlmCall & { deltas: [string, number][] } {
  const deltas: [string, number][] = [];
  return {
    tenant: t,
    commandId: `cmd-${Math.random().toString(36).slice(2, 8)}`,
    correlationId: "c-llm",
    signal: new AbortController().signal,
    onDelta: (text, generation) => deltas.push([text, generation]),
    deltas,
    ...extra,
  };
}

const request = (user = "<data>{}</data>") => ({
  task: "draft_email",
  system: "Answer with JSON.",
  user,
  schema: Answer,
  maxOutputTokens: 500,
  streamField: "body",
});

async function failure(p: Promise<unknown>): Promise<HandlerError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HandlerError);
  return e as HandlerError;
}

const auditRows = (t: Tenant) =>
  tdb.db.selectFrom("llm_audit").selectAll().where("org_id", "=", t.org_id).orderBy("id").execute();
const ledgerRows = (t: Tenant) =>
  tdb.db.selectFrom("llm_cost_ledger").selectAll().where("org_id", "=", t.org_id).orderBy("id").execute();

describe.each(["openai", "anthropic", "gemini"] as const)("%s wire format", (name) => {
  it("streams a JSON answer: the body arrives as deltas in order, tokens and cost are recorded", async () => {
    const s = await server({ kind: "ok", text: JSON.stringify(ANSWER), tokensIn: 120, tokensOut: 45, chunks: 8 });
    const t = uniqueTenant("wire");
    const { r } = router({ providers: [provider(name, s)] });
    const c = call(t);
    const out = await r.generate(request('<data>{"brief":"decline"}</data>'), c);
    expect(out).toMatchObject({ value: ANSWER, provider: name, model: MODEL[name], tokensIn: 120, tokensOut: 45 });
    expect(out.costUsd).toBeCloseTo((120 * 10 + 45 * 20) / 1e6, 12);
    expect(c.deltas.length).toBeGreaterThan(1);
    expect(c.deltas.map(([d]) => d).join("")).toBe(ANSWER.body);
    expect(new Set(c.deltas.map(([, g]) => g))).toEqual(new Set([1]));

    const [req] = s.requests;
    if (name === "openai") {
      expect(req?.path).toBe("/v1/chat/completions");
      expect(req?.headers.authorization).toBe("Bearer key-openai");
      expect(req?.body).toMatchObject({ model: "gpt-test", stream: true, stream_options: { include_usage: true } });
      expect(req?.body.messages).toEqual([
        { role: "system", content: "Answer with JSON." },
        { role: "user", content: '<data>{"brief":"decline"}</data>' },
      ]);
    } else if (name === "anthropic") {
      expect(req?.path).toBe("/v1/messages");
      expect(req?.headers["x-api-key"]).toBe("key-anthropic");
      expect(req?.headers["anthropic-version"]).toBeTruthy();
      expect(req?.body).toMatchObject({ model: "claude-test", stream: true, max_tokens: 500 });
      expect(JSON.stringify(req?.body.system)).toContain("Answer with JSON.");
      expect(JSON.stringify(req?.body.system)).not.toContain("decline");
      expect(JSON.stringify(req?.body.messages)).toContain("decline");
    } else {
      expect(req?.path).toBe("/v1beta/models/gemini-test:streamGenerateContent?alt=sse");
      expect(req?.headers["x-goog-api-key"]).toBe("key-gemini");
      expect(JSON.stringify(req?.body.systemInstruction)).toContain("Answer with JSON.");
      expect(JSON.stringify(req?.body.systemInstruction)).not.toContain("decline");
      expect(JSON.stringify(req?.body.contents)).toContain("decline");
    }
    const [ledger] = await ledgerRows(t);
    expect(ledger).toMatchObject({ provider: name, model: MODEL[name], tokens_in: 120, tokens_out: 45 });
    expect(Number(ledger?.cost_usd)).toBeCloseTo(out.costUsd, 9);
  });

  it("429 with Retry-After: waits the advertised time, then succeeds on the same provider", async () => {
    const s = await server(
      { kind: "status", status: 429, headers: { "retry-after": "1" }, message: "slow down" },
      { kind: "ok", text: JSON.stringify(ANSWER) },
    );
    const t = uniqueTenant("r429");
    const { r } = router({ providers: [provider(name, s)] });
    const out = await r.generate(request(), call(t));
    expect(out.provider).toBe(name);
    expect(s.requests).toHaveLength(2);
    const gap = (s.requests[1]?.at ?? 0) - (s.requests[0]?.at ?? 0);
    expect(gap).toBeGreaterThanOrEqual(950);
    expect((await auditRows(t)).map((a) => a.outcome)).toEqual(["rate_limited", "ok"]);
  });

  it("429 on every attempt fails the call with LLM_RATE_LIMITED (retryable)", async () => {
    const s = await server({ kind: "status", status: 429, headers: { "retry-after-ms": "20" } });
    const { r } = router({ providers: [provider(name, s)], maxRetries: 1 });
    const e = await failure(r.generate(request(), call(uniqueTenant("r429x"))));
    expect(e).toMatchObject({ code: "LLM_RATE_LIMITED", retryable: true });
    expect(s.requests).toHaveLength(2);
  });

  it("5xx is retried with backoff and then answered", async () => {
    const s = await server(
      { kind: "status", status: 503 },
      { kind: "status", status: 500 },
      { kind: "ok", text: JSON.stringify(ANSWER) },
    );
    const t = uniqueTenant("r5xx");
    const { r } = router({ providers: [provider(name, s)] });
    expect((await r.generate(request(), call(t))).value).toEqual(ANSWER);
    expect(s.requests).toHaveLength(3);
    expect((await auditRows(t)).map((a) => a.outcome)).toEqual(["unavailable", "unavailable", "ok"]);
  });

  it("a provider that does not answer in time fails with LLM_TIMEOUT", async () => {
    const s = await server({ kind: "hang" });
    const t = uniqueTenant("rto");
    const { r } = router({ providers: [provider(name, s)], timeoutMs: 300, maxRetries: 0 });
    const started = Date.now();
    const e = await failure(r.generate(request(), call(t)));
    expect(e).toMatchObject({ code: "LLM_TIMEOUT", retryable: true });
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await auditRows(t)).map((a) => [a.outcome, a.error_code])).toEqual([["timeout", "LLM_TIMEOUT"]]);
  });

  it("a truncated stream is a failure: retried, and the restarted text is a new generation", async () => {
    const partial = JSON.stringify({
      subject: "S",
      body: "This first attempt is cut off in the middle of its body text.",
    });
    const s = await server({ kind: "truncate", text: partial }, { kind: "ok", text: JSON.stringify(ANSWER) });
    const t = uniqueTenant("rtr");
    const { r } = router({ providers: [provider(name, s)] });
    const c = call(t);
    expect((await r.generate(request(), c)).value).toEqual(ANSWER);
    expect(s.requests).toHaveLength(2);
    const first = c.deltas
      .filter(([, g]) => g === 1)
      .map(([d]) => d)
      .join("");
    expect(first.length).toBeGreaterThan(0);
    expect("This first attempt is cut off in the middle of its body text.".startsWith(first)).toBe(true);
    expect(
      c.deltas
        .filter(([, g]) => g === 2)
        .map(([d]) => d)
        .join(""),
    ).toBe(ANSWER.body);
    expect((await auditRows(t)).map((a) => a.outcome)).toEqual(["unavailable", "ok"]);
  });
});

describe("answers", () => {
  it("a malformed answer is asked for once more, then LLM_BAD_OUTPUT (not retryable); both cost money", async () => {
    const s = await server({ kind: "ok", text: "Sure! Here is your email: Dear Kim…", tokensIn: 10, tokensOut: 10 });
    const t = uniqueTenant("bad");
    const { r } = router({ providers: [provider("openai", s)] });
    const e = await failure(r.generate(request(), call(t)));
    expect(e).toMatchObject({ code: "LLM_BAD_OUTPUT", retryable: false });
    expect(s.requests).toHaveLength(2);
    expect((await auditRows(t)).map((a) => a.outcome)).toEqual(["bad_output", "bad_output"]);
    expect(await ledgerRows(t)).toHaveLength(2);
  });

  it("a malformed answer followed by a good one succeeds; a fenced JSON answer is accepted", async () => {
    const s = await server(
      { kind: "ok", text: '{"subject": ""}' },
      { kind: "ok", text: `\`\`\`json\n${JSON.stringify(ANSWER)}\n\`\`\`` },
    );
    const { r } = router({ providers: [provider("anthropic", s)] });
    expect((await r.generate(request(), call(uniqueTenant("bad2")))).value).toEqual(ANSWER);
  });

  it("estimates tokens from UTF-8 bytes when a provider reports none", () => {
    expect(estimateTokens("abcd")).toBe(1);
    expect(estimateTokens("안녕하세요")).toBe(4); // 15 bytes
  });
});

describe("fallback and circuit breaker", () => {
  it("falls back to the next provider when the first fails; the result names the one that answered", async () => {
    const bad = await server({ kind: "status", status: 503 });
    const good = await server({ kind: "ok", text: JSON.stringify(ANSWER) });
    const { r, seen } = router({ providers: [provider("openai", bad), provider("anthropic", good)], maxRetries: 0 });
    const out = await r.generate(request(), call(uniqueTenant("fb")));
    expect(out).toMatchObject({ provider: "anthropic", model: "claude-test" });
    expect(seen.fallback).toEqual([expect.objectContaining({ from: "openai", code: "LLM_UNAVAILABLE" })]);
  });

  it("fails with LLM_UNAVAILABLE when every provider fails differently; not retryable when all refused outright", async () => {
    const a = await server({ kind: "status", status: 503 });
    const b = await server({ kind: "status", status: 429 });
    const { r } = router({ providers: [provider("openai", a), provider("gemini", b)], maxRetries: 0 });
    expect(await failure(r.generate(request(), call(uniqueTenant("all"))))).toMatchObject({
      code: "LLM_UNAVAILABLE",
      retryable: true,
    });
    const c = await server({ kind: "status", status: 401, message: "invalid x-api-key" });
    const { r: r2 } = router({ providers: [provider("anthropic", c)] });
    expect(await failure(r2.generate(request(), call(uniqueTenant("401"))))).toMatchObject({
      code: "LLM_UNAVAILABLE",
      retryable: false,
    });
    expect(c.requests).toHaveLength(1); // a refused request is not retried
  });

  it("opens after BREAKER_FAIL_THRESHOLD failures in the window, skips the provider, half-opens after the cooldown and closes on success", async () => {
    // Only Date is faked: the breaker's clock (cockatiel's and WindowBreaker's Date.now) stands
    // still until the test moves it, so a slow machine cannot end the cooldown early; sockets,
    // Postgres and timers stay real.
    vi.useFakeTimers({ toFake: ["Date"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const primary = await server({ kind: "status", status: 500 });
    const backup = await server({ kind: "ok", text: JSON.stringify(ANSWER) });
    const t = uniqueTenant("brk");
    const { r, seen } = router({
      providers: [provider("openai", primary), provider("gemini", backup)],
      maxRetries: 0,
      breaker: { windowMs: 10_000, failThreshold: 2, cooldownMs: 400 },
    });
    for (let i = 0; i < 2; i++) expect((await r.generate(request(), call(t))).provider).toBe("gemini");
    expect(primary.requests).toHaveLength(2);
    expect(seen.breaker.map((e) => e.state)).toEqual(["open"]);

    // Open: the primary is not contacted at all.
    expect((await r.generate(request(), call(t))).provider).toBe("gemini");
    expect(primary.requests).toHaveLength(2);
    expect((await auditRows(t)).filter((a) => a.outcome === "breaker_open")).toHaveLength(1);

    // After the cooldown one trial call goes through; it fails: open again at once.
    vi.setSystemTime(Date.now() + 450);
    expect((await r.generate(request(), call(t))).provider).toBe("gemini");
    expect(primary.requests).toHaveLength(3);
    expect(seen.breaker.map((e) => e.state)).toEqual(["open", "half_open", "open"]);

    // After the next cooldown the trial call succeeds: closed, the primary answers again.
    primary.script({ kind: "ok", text: JSON.stringify(ANSWER) });
    vi.setSystemTime(Date.now() + 450);
    expect((await r.generate(request(), call(t))).provider).toBe("openai");
    expect((await r.generate(request(), call(t))).provider).toBe("openai");
    expect(seen.breaker.map((e) => e.state)).toEqual(["open", "half_open", "open", "half_open", "closed"]);
  });

  it("failures outside the window do not add up", async () => {
    const primary = await server({ kind: "status", status: 500 });
    const backup = await server({ kind: "ok", text: JSON.stringify(ANSWER) });
    const { r, seen } = router({
      providers: [provider("openai", primary), provider("anthropic", backup)],
      maxRetries: 0,
      breaker: { windowMs: 200, failThreshold: 2, cooldownMs: 10_000 },
    });
    const t = uniqueTenant("win");
    await r.generate(request(), call(t));
    await new Promise((res) => setTimeout(res, 250));
    await r.generate(request(), call(t));
    expect(seen.breaker).toEqual([]);
    expect(primary.requests).toHaveLength(2);
  });
});

describe("budget, ledger and audit", () => {
  // 100 tokens in × $10/Mtok + 50 out × $20/Mtok = $0.002 per call.
  const PER_CALL = 0.002;

  it("soft threshold warns once; hard threshold refuses without a request; ledger and day total add up", async () => {
    const s = await server({ kind: "ok", text: JSON.stringify(ANSWER), tokensIn: 100, tokensOut: 50 });
    const t = uniqueTenant("bud");
    const { r, seen } = router({
      providers: [provider("openai", s)],
      budget: { dailyUsd: 0.005, softPct: 50, hardPct: 100 },
    });
    const warnings: unknown[] = [];
    const c = () => call(t, { onBudgetWarning: async (w) => void warnings.push(w) });
    await r.generate(request(), c()); // 0.002
    expect(warnings).toHaveLength(0);
    await r.generate(request(), c()); // 0.004 ≥ 0.0025: warns
    expect(warnings).toEqual([
      expect.objectContaining({ dailyBudgetUsd: 0.005, softPct: 50, hardPct: 100, spentUsd: expect.closeTo(0.004, 9) }),
    ]);
    await r.generate(request(), c()); // 0.004 < 0.005: allowed → 0.006; no second warning
    expect(warnings).toHaveLength(1);
    expect(s.requests).toHaveLength(3);

    const e = await failure(r.generate(request(), c()));
    expect(e).toMatchObject({ code: "LLM_BUDGET_EXCEEDED", retryable: false });
    expect(e.message).toMatch(/\$0\.0060/);
    expect(s.requests).toHaveLength(3); // no call made
    expect(seen.budget.map((b) => b.kind)).toEqual(["soft", "hard"]);

    const ledger = await ledgerRows(t);
    expect(ledger.map((l) => [l.tokens_in, l.tokens_out, Number(l.cost_usd)])).toEqual([
      [100, 50, PER_CALL],
      [100, 50, PER_CALL],
      [100, 50, PER_CALL],
    ]);
    const day = await tdb.db
      .selectFrom("llm_budget_days")
      .selectAll()
      .where("org_id", "=", t.org_id)
      .executeTakeFirstOrThrow();
    expect(Number(day.spent_usd)).toBeCloseTo(3 * PER_CALL, 9);
    expect(day.calls).toBe(3);
    expect(day.soft_warned_at).not.toBeNull();
    const audit = await auditRows(t);
    expect(audit.map((a) => a.outcome)).toEqual(["ok", "ok", "ok", "budget_refused"]);
    expect(audit.at(-1)).toMatchObject({ error_code: "LLM_BUDGET_EXCEEDED", tokens_in: 0 });
  });

  it("the soft warning is given once even when calls race past the threshold", async () => {
    const s = await server({ kind: "ok", text: JSON.stringify(ANSWER), tokensIn: 100, tokensOut: 50 });
    const t = uniqueTenant("race");
    const { r } = router({ providers: [provider("gemini", s)], budget: { dailyUsd: 1, softPct: 0.1, hardPct: 100 } });
    let warnings = 0;
    await Promise.all(
      Array.from({ length: 6 }, () => r.generate(request(), call(t, { onBudgetWarning: async () => void warnings++ }))),
    );
    expect(warnings).toBe(1);
  });

  it("audit rows carry tenant, command, provider, model, tokens, cost, latency and outcome; text only with LLM_AUDIT_CONTENT", async () => {
    const s = await server({ kind: "ok", text: JSON.stringify(ANSWER), tokensIn: 7, tokensOut: 9 });
    const plain = uniqueTenant("aud");
    const { r } = router({ providers: [provider("anthropic", s)] });
    const c1 = call(plain);
    await r.generate(request('<data>{"brief":"secret plan"}</data>'), c1);
    const [a] = await auditRows(plain);
    expect(a).toMatchObject({
      project_id: plain.project_id,
      command_id: c1.commandId,
      correlation_id: "c-llm",
      task: "draft_email",
      provider: "anthropic",
      model: "claude-test",
      outcome: "ok",
      error_code: null,
      tokens_in: 7,
      tokens_out: 9,
      prompt: null,
      output: null,
    });
    expect(a?.latency_ms).toBeGreaterThanOrEqual(0);
    expect(Number(a?.cost_usd)).toBeCloseTo((7 * 10 + 9 * 20) / 1e6, 9);

    const withContent = uniqueTenant("audc");
    const { r: r2 } = router({ providers: [provider("anthropic", s)], audit: { enabled: true, content: true } });
    await r2.generate(request('<data>{"brief":"secret plan"}</data>'), call(withContent));
    const [b] = await auditRows(withContent);
    expect(b?.prompt).toEqual({ system: "Answer with JSON.", user: '<data>{"brief":"secret plan"}</data>' });
    expect(b?.output).toBe(JSON.stringify(ANSWER));

    const off = uniqueTenant("audoff");
    const { r: r3 } = router({ providers: [provider("anthropic", s)], audit: { enabled: false, content: true } });
    await r3.generate(request(), call(off));
    expect(await auditRows(off)).toHaveLength(0);
    expect(await ledgerRows(off)).toHaveLength(1);
  });
});

describe("infrastructure failures", () => {
  it("a ledger that cannot write fails the call as it is: no fallback to the next (paid) provider", async () => {
    const a = await server({ kind: "ok", text: JSON.stringify(ANSWER) });
    const b = await server({ kind: "ok", text: JSON.stringify(ANSWER) });
    const broken = new Error("postgres is down");
    const { r } = router({
      providers: [provider("openai", a), provider("anthropic", b)],
      ledger: { spent: async () => 0, record: async () => Promise.reject(broken) },
    });
    await expect(r.generate(request(), call(uniqueTenant("pg")))).rejects.toBe(broken);
    expect(b.requests).toHaveLength(0);
  });
});

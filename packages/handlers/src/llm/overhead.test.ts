/**
 * What the router adds to a model call, measured against a local OpenAI-compatible server
 * (median of sequential calls): the bare AI SDK stream, the router with an in-memory ledger
 * (breaker, retry policy, parsing, events), the router with the Postgres ledger and audit, and
 * a call that first fails over from a provider answering 503. Prints the figures; asserts
 * generous bounds so a regression (e.g. an accidental backoff on the happy path) fails.
 */
import { createTestDatabase, type FakeLlmServer, startFakeLlm, type TestDatabase, uniqueTenant } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { LlmLedger } from "./ledger.ts";
import { dbLlmLedger } from "./ledger.ts";
import { streamModel } from "./model-call.ts";
import { createModelProvider } from "./providers.ts";
import { LlmRouter } from "./router.ts";

const N = 60;
const TEXT = JSON.stringify({ subject: "S", body: "A short body of a draft, streamed in a few chunks." });
let ok: FakeLlmServer;
let down: FakeLlmServer;
let tdb: TestDatabase;

beforeAll(async () => {
  ok = await startFakeLlm({ kind: "ok", text: TEXT, chunks: 4 });
  down = await startFakeLlm({ kind: "status", status: 503 });
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await ok?.close();
  await down?.close();
  await tdb?.drop();
});

async function median(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 5; i++) await fn(); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return ms[Math.floor(ms.length / 2)] ?? 0;
}

const memoryLedger: LlmLedger = { spent: async () => 0, record: async () => ({ spentUsd: 0, softCrossed: false }) };

function routerOf(ledger: LlmLedger, urls: string[]) {
  return new LlmRouter({
    providers: urls.map((u, i) =>
      createModelProvider({ name: i === 0 ? "openai" : "anthropic", model: "m", apiKey: "k", baseUrl: `${u}/v1` }),
    ),
    offlineFallback: false,
    timeoutMs: 5000,
    maxRetries: 0,
    retryBaseMs: 10,
    retryMaxMs: 10,
    maxRetryAfterMs: 1000,
    breaker: { windowMs: 60_000, failThreshold: 1_000_000, cooldownMs: 1000 },
    budget: { dailyUsd: 1000, softPct: 80, hardPct: 100 },
    prices: {},
    audit: { enabled: true, content: false },
    ledger,
    logger: pino({ level: "silent" }),
  });
}

describe("router overhead per call", () => {
  it("is small next to the call itself", async () => {
    const schema = z.object({ subject: z.string(), body: z.string() });
    const req = { task: "draft_email", system: "s", user: "u", schema, maxOutputTokens: 100, streamField: "body" };
    const t = uniqueTenant("ovh");
    const call = { tenant: t, commandId: "c", correlationId: "c", signal: new AbortController().signal };
    const model = createModelProvider({ name: "openai", model: "m", apiKey: "k", baseUrl: `${ok.url}/v1` });

    const bare = await median(() =>
      streamModel({ model: model.languageModel, system: "s", user: "u", maxOutputTokens: 100, signal: call.signal }),
    );
    const inMemory = await median(() => routerOf(memoryLedger, [ok.url]).generate(req, call));
    const shared = routerOf(dbLlmLedger(tdb.db), [ok.url]);
    const withDb = await median(() => shared.generate(req, call));
    const failover = routerOf(memoryLedger, [down.url, ok.url]);
    const withFallback = await median(() => failover.generate(req, call));

    const figures = {
      bare_ms: bare.toFixed(2),
      router_in_memory_ms: inMemory.toFixed(2),
      router_postgres_ledger_ms: withDb.toFixed(2),
      router_after_503_failover_ms: withFallback.toFixed(2),
    };
    console.log(`llm router overhead (median of ${N}): ${JSON.stringify(figures)}`);
    // Loose bounds (the overhead here is a few ms): they catch a router that adds a
    // round trip's worth of work per call, not a loaded machine's noise.
    expect(inMemory - bare).toBeLessThan(25);
    expect(withDb - bare).toBeLessThan(100);
    expect(withFallback).toBeLessThan(bare * 4 + 50);
  });
});

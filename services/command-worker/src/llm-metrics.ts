import type { LlmEvents } from "@nexus/handlers";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** `nexus_llm_breaker_state` values. */
export const BREAKER_STATE_VALUE = { closed: 0, open: 1, half_open: 2, isolated: 3 } as const;

/**
 * Prometheus metrics of the language-model layer, fed by its events (no tenant labels):
 * `nexus_llm_calls_total{provider,model,task,outcome}`,
 * `nexus_llm_tokens_total{provider,model,direction}` (direction `in`/`out`),
 * `nexus_llm_cost_usd_total{provider,model}` (estimated, from the price table),
 * `nexus_llm_call_duration_seconds{provider,outcome}`,
 * `nexus_llm_breaker_state{provider}` (0 closed, 1 open, 2 half-open),
 * `nexus_llm_fallbacks_total{from,code}`, `nexus_llm_budget_events_total{kind}` (soft, hard).
 * @param providers the chain's providers, so their breaker gauges read 0 before any call.
 */
export function meterLlmEvents(events: LlmEvents, registry: Registry, providers: readonly string[]): void {
  const calls = new Counter({
    name: "nexus_llm_calls_total",
    help: "Language-model call attempts by outcome (ok, bad_output, timeout, rate_limited, unavailable, rejected, breaker_open, budget_refused, aborted)",
    labelNames: ["provider", "model", "task", "outcome"],
    registers: [registry],
  });
  const tokens = new Counter({
    name: "nexus_llm_tokens_total",
    help: "Tokens used by language-model calls (provider-reported, else estimated), by direction in/out",
    labelNames: ["provider", "model", "direction"],
    registers: [registry],
  });
  const cost = new Counter({
    name: "nexus_llm_cost_usd_total",
    help: "Estimated cost of language-model calls in USD (price table)",
    labelNames: ["provider", "model"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "nexus_llm_call_duration_seconds",
    help: "Wall time of language-model call attempts, including the whole stream",
    labelNames: ["provider", "outcome"],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60],
    registers: [registry],
  });
  const breaker = new Gauge({
    name: "nexus_llm_breaker_state",
    help: "Circuit breaker state per provider: 0 closed, 1 open, 2 half-open",
    labelNames: ["provider"],
    registers: [registry],
  });
  const fallbacks = new Counter({
    name: "nexus_llm_fallbacks_total",
    help: "Calls that moved on from a failed provider, by provider and failure code",
    labelNames: ["from", "code"],
    registers: [registry],
  });
  const budget = new Counter({
    name: "nexus_llm_budget_events_total",
    help: "Tenants crossing the soft budget threshold (soft) and calls refused at the hard one (hard)",
    labelNames: ["kind"],
    registers: [registry],
  });
  for (const p of providers) breaker.set({ provider: p }, 0);
  events.on("llm:call", (e) => {
    calls.inc({ provider: e.provider, model: e.model, task: e.task, outcome: e.outcome });
    if (e.tokensIn > 0) tokens.inc({ provider: e.provider, model: e.model, direction: "in" }, e.tokensIn);
    if (e.tokensOut > 0) tokens.inc({ provider: e.provider, model: e.model, direction: "out" }, e.tokensOut);
    if (e.costUsd > 0) cost.inc({ provider: e.provider, model: e.model }, e.costUsd);
    if (e.outcome !== "budget_refused" && e.outcome !== "breaker_open")
      duration.observe({ provider: e.provider, outcome: e.outcome }, e.ms / 1000);
  });
  events.on("llm:breaker", (e) => breaker.set({ provider: e.provider }, BREAKER_STATE_VALUE[e.state]));
  events.on("llm:fallback", (e) => fallbacks.inc({ from: e.from, code: e.code }));
  events.on("llm:budget", (e) => budget.inc({ kind: e.kind }));
}

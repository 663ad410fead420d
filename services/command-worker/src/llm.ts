/**
 * The command-worker's language-model layer, built from its configuration: the provider chain
 * (checked at start-up), the router with breakers, retries, budget, ledger and audit.
 */
import fs from "node:fs";
import type { Database } from "@nexus/core";
import {
  createModelProvider,
  DEFAULT_MODELS,
  dbLlmLedger,
  type LlmClient,
  type LlmEvents,
  type LlmLedger,
  LlmRouter,
  type ModelProviderName,
  OFFLINE_LLM,
  PriceTable,
  type ProviderSpec,
  priceTable,
} from "@nexus/handlers";
import { ConfigError } from "@nexus/runtime";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { LlmConfig } from "./config.ts";

/** Thrown at start-up when the language-model configuration cannot work; names what is missing. */
export class LlmConfigError extends ConfigError {
  override name = "LlmConfigError";
}

/** The chain as configured: usable model providers in order, whether `offline` ends it, and what was skipped. */
export interface LlmChainPlan {
  specs: ProviderSpec[];
  offlineFallback: boolean;
  /** One line per configured provider that cannot be used, naming the missing variable. */
  skipped: string[];
}

/**
 * Resolves `LLM_PRIMARY_PROVIDER` and `LLM_FALLBACK_PROVIDERS` into a chain. A model provider
 * is usable with its key (`<PROVIDER>_API_KEY`); an OpenAI-compatible one also with only
 * `OPENAI_BASE_URL` (local servers need no key).
 * @throws {LlmConfigError} when `offline` is not last, or `LLM_REQUIRED=true` and no model
 *   provider is usable (the message names each missing variable).
 */
export function planLlmChain(c: LlmConfig): LlmChainPlan {
  const names = [...new Set([c.LLM_PRIMARY_PROVIDER, ...c.LLM_FALLBACK_PROVIDERS])];
  const offlineAt = names.indexOf("offline");
  if (offlineAt >= 0 && offlineAt !== names.length - 1)
    throw new LlmConfigError(
      `invalid configuration:\n  LLM_PRIMARY_PROVIDER/LLM_FALLBACK_PROVIDERS: "offline" can only end the chain (${names.join(",")})`,
    );
  const specs: ProviderSpec[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    if (name === "offline") continue;
    const s = providerSpec(c, name);
    if (s.missing) skipped.push(`${name}: ${s.missing}`);
    else specs.push(s.spec);
  }
  if (c.LLM_REQUIRED && specs.length === 0) {
    const why =
      names.length === 1 && names[0] === "offline"
        ? "LLM_PRIMARY_PROVIDER is offline (the template provider, not a language model); set it to openai, anthropic or gemini and give that provider's key"
        : `no configured provider is usable: ${skipped.join("; ")}`;
    throw new LlmConfigError(`invalid configuration:\n  LLM_REQUIRED=true: ${why}`);
  }
  return { specs, offlineFallback: offlineAt >= 0 || specs.length === 0, skipped };
}

function providerSpec(c: LlmConfig, name: ModelProviderName): { spec: ProviderSpec; missing?: string } {
  const env = {
    openai: { key: c.OPENAI_API_KEY, model: c.OPENAI_MODEL, base: c.OPENAI_BASE_URL },
    anthropic: { key: c.ANTHROPIC_API_KEY, model: c.ANTHROPIC_MODEL, base: c.ANTHROPIC_BASE_URL },
    gemini: { key: c.GEMINI_API_KEY, model: c.GEMINI_MODEL, base: c.GEMINI_BASE_URL },
  }[name];
  const spec: ProviderSpec = {
    name,
    model: env.model ?? DEFAULT_MODELS[name],
    ...(env.key ? { apiKey: env.key } : {}),
    ...(env.base ? { baseUrl: env.base } : {}),
    ...(name === "openai" && c.OPENAI_API_VERSION ? { apiVersion: c.OPENAI_API_VERSION } : {}),
  };
  const upper = name.toUpperCase();
  if (env.key) return { spec };
  if (name === "openai" && env.base) return { spec };
  return {
    spec,
    missing:
      name === "openai"
        ? `${upper}_API_KEY is not set (nor OPENAI_BASE_URL for a local server)`
        : `${upper}_API_KEY is not set`,
  };
}

/**
 * The price table: defaults, overlaid with `LLM_PRICES_FILE`, overlaid with `LLM_PRICES`.
 * @throws {LlmConfigError} when either is not valid JSON of the table's shape, or the file cannot be read.
 */
export function loadPrices(c: Pick<LlmConfig, "LLM_PRICES" | "LLM_PRICES_FILE">): PriceTable {
  const parse = (what: string, text: string): PriceTable => {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new LlmConfigError(`invalid configuration:\n  ${what}: not JSON (${(err as Error).message})`);
    }
    const r = PriceTable.safeParse(json);
    if (!r.success)
      throw new LlmConfigError(
        `invalid configuration:\n  ${what}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      );
    return r.data;
  };
  let file: PriceTable = {};
  if (c.LLM_PRICES_FILE) {
    let text: string;
    try {
      text = fs.readFileSync(c.LLM_PRICES_FILE, "utf8");
    } catch (err) {
      throw new LlmConfigError(`invalid configuration:\n  LLM_PRICES_FILE: ${(err as Error).message}`);
    }
    file = parse("LLM_PRICES_FILE", text);
  }
  return priceTable({ ...file, ...(c.LLM_PRICES ? parse("LLM_PRICES", c.LLM_PRICES) : {}) });
}

/**
 * Builds the worker's {@link LlmClient}: {@link OFFLINE_LLM} when the chain has no model
 * provider, else an {@link LlmRouter} over the planned chain.
 * @throws {LlmConfigError} see {@link planLlmChain} and {@link loadPrices}.
 */
export function createLlm(
  c: LlmConfig,
  deps: { db: Kysely<Database>; logger: Logger; events?: LlmEvents; ledger?: LlmLedger; now?: () => Date },
): { llm: LlmClient; plan: LlmChainPlan } {
  const plan = planLlmChain(c);
  const prices = loadPrices(c);
  for (const s of plan.skipped) deps.logger.warn({ provider: s }, "llm:provider-skipped");
  if (plan.specs.length === 0) return { llm: OFFLINE_LLM, plan };
  const llm = new LlmRouter({
    providers: plan.specs.map(createModelProvider),
    offlineFallback: plan.offlineFallback,
    timeoutMs: c.LLM_TIMEOUT_MS,
    maxRetries: c.LLM_MAX_RETRIES,
    retryBaseMs: c.LLM_RETRY_BASE_MS,
    retryMaxMs: c.LLM_RETRY_MAX_MS,
    maxRetryAfterMs: c.LLM_RETRY_AFTER_MAX_MS,
    breaker: {
      windowMs: c.BREAKER_WINDOW_SECONDS * 1000,
      failThreshold: c.BREAKER_FAIL_THRESHOLD,
      cooldownMs: c.BREAKER_COOLDOWN_SECONDS * 1000,
    },
    budget: { dailyUsd: c.LLM_BUDGET_DAILY_USD, softPct: c.LLM_BUDGET_SOFT_PCT, hardPct: c.LLM_BUDGET_HARD_PCT },
    prices,
    audit: { enabled: c.LLM_AUDIT_ENABLED, content: c.LLM_AUDIT_CONTENT },
    ledger: deps.ledger ?? dbLlmLedger(deps.db),
    logger: deps.logger,
    ...(deps.events ? { events: deps.events } : {}),
    ...(deps.now ? { now: deps.now } : {}),
  });
  return { llm, plan };
}

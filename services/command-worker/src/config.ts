import { commaList } from "@nexus/contracts";
import { BaseConfig, envBool, WorkerTriageConfig } from "@nexus/runtime";
import { z } from "zod";

/** A boolean env var that defaults to true (`false`/`0` turn it off). */
const envBoolTrue = z
  .enum(["true", "false", "1", "0"])
  .default("true")
  .transform((v) => v === "true" || v === "1");

/** Provider names of `LLM_PRIMARY_PROVIDER` / `LLM_FALLBACK_PROVIDERS`. */
export const LlmProviderName = z.enum(["offline", "openai", "anthropic", "gemini"]);
export type LlmProviderName = z.infer<typeof LlmProviderName>;

/** The language-model variables (docs/llm.md has the table with defaults and meanings). */
export const LlmConfig = z.object({
  /** The first provider of the chain; `offline` (templates, TextRank; no key) by default. */
  LLM_PRIMARY_PROVIDER: LlmProviderName.default("offline"),
  /** Comma-separated providers tried in order after the primary; `offline` may end the list. */
  LLM_FALLBACK_PROVIDERS: commaList.pipe(z.array(LlmProviderName)),
  /** Refuse to start without a usable model provider (the offline provider does not count). */
  LLM_REQUIRED: envBool,
  OPENAI_API_KEY: z.string().optional(),
  OPENAI_MODEL: z.string().optional(),
  /** Any OpenAI-compatible server (Azure OpenAI, vLLM, Ollama, llama.cpp, LM Studio), up to `/v1`. */
  OPENAI_BASE_URL: z.url().optional(),
  /** Azure OpenAI `api-version`. */
  OPENAI_API_VERSION: z.string().optional(),
  ANTHROPIC_API_KEY: z.string().optional(),
  ANTHROPIC_MODEL: z.string().optional(),
  ANTHROPIC_BASE_URL: z.url().optional(),
  GEMINI_API_KEY: z.string().optional(),
  GEMINI_MODEL: z.string().optional(),
  GEMINI_BASE_URL: z.url().optional(),
  /** Limit of one model request including its whole stream, ms. */
  LLM_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  /** Retries per provider and call after 429, 5xx, timeouts and broken streams. */
  LLM_MAX_RETRIES: z.coerce.number().int().min(0).max(10).default(2),
  /** Backoff between retries without Retry-After: first cap and largest delay, ms (exponential, full jitter). */
  LLM_RETRY_BASE_MS: z.coerce.number().int().min(1).default(500),
  LLM_RETRY_MAX_MS: z.coerce.number().int().min(1).default(8000),
  /** A Retry-After longer than this is not waited for: the chain falls back to the next provider, ms. */
  LLM_RETRY_AFTER_MAX_MS: z.coerce.number().int().min(0).default(20_000),
  /** Circuit breaker per provider: failed calls within the window that open it. */
  BREAKER_FAIL_THRESHOLD: z.coerce.number().int().min(1).default(5),
  /** Circuit breaker window, seconds (fractions allowed). */
  BREAKER_WINDOW_SECONDS: z.coerce.number().positive().default(60),
  /** How long an open breaker refuses calls before one trial call (half-open), seconds. */
  BREAKER_COOLDOWN_SECONDS: z.coerce.number().positive().default(30),
  /** Per-tenant language-model budget per UTC day, USD (estimated from the price table). */
  LLM_BUDGET_DAILY_USD: z.coerce.number().min(0).default(10),
  /** Soft threshold, percent of the daily budget: one `risk.warning` per tenant and day. */
  LLM_BUDGET_SOFT_PCT: z.coerce.number().min(0).max(1000).default(80),
  /** Hard threshold, percent of the daily budget: model calls are refused (`LLM_BUDGET_EXCEEDED`). */
  LLM_BUDGET_HARD_PCT: z.coerce.number().min(0).max(1000).default(100),
  /** Price table overrides as JSON: `{"<provider>:<model>"|"<model>"|"*": {"input_per_mtok": n, "output_per_mtok": n}}`. */
  LLM_PRICES: z.string().optional(),
  /** A file holding the same JSON as `LLM_PRICES` (both may be set; `LLM_PRICES` wins per key). */
  LLM_PRICES_FILE: z.string().optional(),
  /** An audit row per model call (tenant, command, provider, model, tokens, cost, latency, outcome). */
  LLM_AUDIT_ENABLED: envBoolTrue,
  /** Also store prompt and answer text in the audit rows. */
  LLM_AUDIT_CONTENT: envBool,
  /** Live progress: at most one message per command per this interval (stage changes go at once), ms. */
  LLM_PROGRESS_INTERVAL_MS: z.coerce.number().int().min(20).default(250),
});
export type LlmConfig = z.infer<typeof LlmConfig>;

/**
 * command-worker configuration (README "Configuration"). `SHARE_WEBHOOK_SECRET` is required
 * (at least 16 characters) when `SHARE_WEBHOOK_URL` is set.
 */
export const CommandWorkerConfig = BaseConfig.extend(WorkerTriageConfig.shape)
  .extend(LlmConfig.shape)
  .extend({
    /** HTTP port for /health, /ready, /metrics. */
    PORT: z.coerce.number().int().min(0).max(65535).default(8082),
    /** Deliveries of one message before it is given up: the command fails and is dead-lettered. */
    MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
    /** Retry schedule: cap of the first delay and largest delay, ms (exponential with full jitter). */
    RETRY_BASE_MS: z.coerce.number().int().min(1).default(500),
    RETRY_MAX_MS: z.coerce.number().int().min(1).default(30_000),
    /**
     * Commands handled at once by one process. The jobs running at once share their Postgres
     * statements (group commit), so more of them means fewer statements per command.
     */
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(64),
    /**
     * A new GREEN/YELLOW command whose handler finishes within this many ms is recorded as done
     * in one statement, with accepted, started and completed published together; a slower one
     * is recorded as running (and reported started) when this time is up. 0: every command is
     * recorded as running before its handler starts.
     */
    QUICK_COMMAND_MS: z.coerce.number().int().min(0).max(1000).default(25),
    /**
     * Group commit linger, ms: a command statement (context read, record, complete) that comes
     * within this many ms of the one before waits this long for others to share it, so that a
     * steady moderate load does not pay one round trip per command; one after a longer pause
     * goes out at once. 0: no linger (only the batches that form while a statement runs). See
     * docs/architecture.md.
     */
    GROUP_COMMIT_LINGER_MS: z.coerce.number().min(0).max(100).default(4),
    /** Default lifetime of an ask, seconds (a tenant may set its own in compliance settings). */
    ASK_TTL_SECONDS: z.coerce.number().int().min(1).default(86_400),
    /** PubAck timeout of report and dispatch publishes, ms. */
    PUBLISH_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
    /** Where the share relay POSTs queued external shares; the relay runs only when this is set. */
    SHARE_WEBHOOK_URL: z.url().optional(),
    /** HMAC key for signing webhook deliveries (see README "Webhooks"). */
    SHARE_WEBHOOK_SECRET: z.string().min(16).optional(),
    /** Delivery attempts of one share before it is marked `failed`. */
    WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(8),
    /** Timeout of one webhook POST, ms. */
    WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
    /** How often the relay looks for due shares, ms. */
    WEBHOOK_POLL_MS: z.coerce.number().int().min(10).default(500),
    /** Backoff between webhook attempts: base and cap, ms. */
    WEBHOOK_RETRY_BASE_MS: z.coerce.number().int().min(1).default(1000),
    WEBHOOK_RETRY_MAX_MS: z.coerce.number().int().min(1).default(300_000),
    /**
     * Fault injection for tests and drills: each handler waits this long (ms) before it runs, so
     * a worker can be killed mid-command. 0 in production.
     */
    FAULT_INJECT_HANDLER_DELAY_MS: z.coerce.number().int().min(0).default(0),
    /**
     * Fault injection for tests and drills: comma-separated command types whose handler fails
     * with a transient error on every attempt, so their commands exhaust their retries and are
     * dead-lettered (`RETRIES_EXHAUSTED`). Empty in production.
     */
    FAULT_INJECT_FAIL_TYPES: commaList,
  })
  .superRefine((c, ctx) => {
    if (c.SHARE_WEBHOOK_URL && !c.SHARE_WEBHOOK_SECRET)
      ctx.addIssue({
        code: "custom",
        path: ["SHARE_WEBHOOK_SECRET"],
        message: "required when SHARE_WEBHOOK_URL is set",
      });
    if (c.LLM_BUDGET_SOFT_PCT > c.LLM_BUDGET_HARD_PCT)
      ctx.addIssue({ code: "custom", path: ["LLM_BUDGET_SOFT_PCT"], message: "must not exceed LLM_BUDGET_HARD_PCT" });
  });
export type CommandWorkerConfig = z.infer<typeof CommandWorkerConfig>;

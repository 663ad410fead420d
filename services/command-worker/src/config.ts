import { BaseConfig, WorkerTriageConfig } from "@nexus/runtime";
import { z } from "zod";

/**
 * command-worker configuration (README "Configuration"). `SHARE_WEBHOOK_SECRET` is required
 * (at least 16 characters) when `SHARE_WEBHOOK_URL` is set.
 */
export const CommandWorkerConfig = BaseConfig.extend(WorkerTriageConfig.shape)
  .extend({
    /** HTTP port for /health, /ready, /metrics. */
    PORT: z.coerce.number().int().min(0).max(65535).default(8082),
    /** Deliveries of one message before it is given up: the command fails and is dead-lettered. */
    MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
    /** Retry schedule: cap of the first delay and largest delay, ms (exponential with full jitter). */
    RETRY_BASE_MS: z.coerce.number().int().min(1).default(500),
    RETRY_MAX_MS: z.coerce.number().int().min(1).default(30_000),
    /** Commands handled at once by one process. */
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
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
    FAULT_INJECT_FAIL_TYPES: z
      .string()
      .default("")
      .transform((s) =>
        s
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean),
      ),
  })
  .superRefine((c, ctx) => {
    if (c.SHARE_WEBHOOK_URL && !c.SHARE_WEBHOOK_SECRET)
      ctx.addIssue({
        code: "custom",
        path: ["SHARE_WEBHOOK_SECRET"],
        message: "required when SHARE_WEBHOOK_URL is set",
      });
  });
export type CommandWorkerConfig = z.infer<typeof CommandWorkerConfig>;

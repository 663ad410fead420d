import { BaseConfig } from "@nexus/platform";
import { z } from "zod";
import type { WebhookRelaySettings } from "./connector/webhook-relay.ts";

/**
 * The approval-worker's settings: {@link BaseConfig} plus the ones below. Units are in the
 * names; defaults are stated beside them. Parsed once in `main.ts` (the only place that reads
 * `process.env`); everything else receives {@link ApprovalWorkerOptions}.
 *
 * `SHARE_WEBHOOK_SECRET` is required (at least 16 characters) when `SHARE_WEBHOOK_URL` is set.
 */
export const ApprovalWorkerConfig = BaseConfig.extend({
  /** HTTP port of /health, /ready and /metrics. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8083),
  /** Deliveries of one decision before it is dead-lettered and reported `ask.execution_failed`. */
  MAX_RETRIES: z.coerce.number().int().min(1).max(1000).default(5),
  /** Base of the exponential redelivery backoff after a transient failure, milliseconds. */
  RETRY_BASE_MS: z.coerce.number().int().min(1).default(500),
  /** Cap of the redelivery backoff, milliseconds. */
  RETRY_MAX_MS: z.coerce.number().int().min(1).default(30_000),
  /** Decisions one process handles at once. */
  MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(1000).default(16),
  /** Period of the expiry sweeper, milliseconds. */
  EXPIRY_SWEEP_MS: z.coerce.number().int().min(50).default(1000),
  /** Where the webhook relay POSTs queued shares; the relay runs only when this is set. */
  SHARE_WEBHOOK_URL: z.url().optional(),
  /** HMAC-SHA256 key of `X-Nexus-Signature` (see README "Webhook signature"). */
  SHARE_WEBHOOK_SECRET: z.string().min(16).optional(),
  /** Delivery attempts of one share before it is marked `failed`. */
  WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(8),
  /** Timeout of one webhook POST, milliseconds. */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
  /** How often the relay looks for due shares, milliseconds. */
  WEBHOOK_POLL_MS: z.coerce.number().int().min(10).default(500),
  /** Base of the exponential backoff between webhook attempts, milliseconds. */
  WEBHOOK_RETRY_BASE_MS: z.coerce.number().int().min(1).default(1000),
  /** Cap of the backoff between webhook attempts, milliseconds (5 min). */
  WEBHOOK_RETRY_MAX_MS: z.coerce.number().int().min(1).default(300_000),
}).superRefine((c, ctx) => {
  if (c.SHARE_WEBHOOK_URL && !c.SHARE_WEBHOOK_SECRET)
    ctx.addIssue({
      code: "custom",
      path: ["SHARE_WEBHOOK_SECRET"],
      message: "required when SHARE_WEBHOOK_URL is set",
    });
});
export type ApprovalWorkerConfig = z.infer<typeof ApprovalWorkerConfig>;

/** What {@link createApprovalWorker} needs to know, independent of environment variable names. */
export interface ApprovalWorkerOptions {
  /** Deliveries before a decision is dead-lettered (default 5). */
  maxRetries: number;
  /** Redelivery backoff base and cap, milliseconds (defaults 500 / 30000). */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Decisions handled at once by one process (default 16). */
  maxInFlight?: number;
  /** Expiry sweeper period, milliseconds (default 1000); `0` disables the sweeper. */
  expirySweepMs: number;
  /** The webhook relay; absent = no relay in this process. */
  webhook?: WebhookRelaySettings;
}

/** Maps the parsed configuration to {@link ApprovalWorkerOptions}. */
export function workerOptionsFromConfig(c: ApprovalWorkerConfig): ApprovalWorkerOptions {
  return {
    maxRetries: c.MAX_RETRIES,
    retryBaseMs: c.RETRY_BASE_MS,
    retryMaxMs: c.RETRY_MAX_MS,
    maxInFlight: c.MAX_IN_FLIGHT,
    expirySweepMs: c.EXPIRY_SWEEP_MS,
    ...(c.SHARE_WEBHOOK_URL && c.SHARE_WEBHOOK_SECRET
      ? {
          webhook: {
            url: c.SHARE_WEBHOOK_URL,
            secret: c.SHARE_WEBHOOK_SECRET,
            maxAttempts: c.WEBHOOK_MAX_ATTEMPTS,
            timeoutMs: c.WEBHOOK_TIMEOUT_MS,
            pollMs: c.WEBHOOK_POLL_MS,
            retryBaseMs: c.WEBHOOK_RETRY_BASE_MS,
            retryMaxMs: c.WEBHOOK_RETRY_MAX_MS,
          },
        }
      : {}),
  };
}

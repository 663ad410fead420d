import { BaseConfig, WorkerTriageConfig } from "@nexus/runtime";
import { z } from "zod";

/** approval-worker configuration (README "Configuration"). */
export const ApprovalWorkerConfig = BaseConfig.extend(WorkerTriageConfig.shape).extend({
  /** HTTP port of /health, /ready and /metrics. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8083),
  /** Deliveries of one register entry before it is dead-lettered. */
  MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  /** Retry schedule: cap of the first delay and largest delay, ms (exponential with full jitter). */
  RETRY_BASE_MS: z.coerce.number().int().min(1).default(500),
  RETRY_MAX_MS: z.coerce.number().int().min(1).default(30_000),
  /** Register entries one process applies at once. */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
  /** Period of the expiry sweeper, ms. */
  EXPIRY_SWEEP_MS: z.coerce.number().int().min(50).default(1000),
  /** PubAck timeout of report, notification and dispatch publishes, ms. */
  PUBLISH_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
});
export type ApprovalWorkerConfig = z.infer<typeof ApprovalWorkerConfig>;

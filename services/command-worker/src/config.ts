import { BaseConfig } from "@nexus/platform";
import { z } from "zod";

/** command-worker configuration (README "Configuration"). */
export const CommandWorkerConfig = BaseConfig.extend({
  /** HTTP port for /health, /ready, /metrics. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8082),
  /** Retries of a failing handler before the command is dead-lettered and reported failed. */
  MAX_RETRIES: z.coerce.number().int().min(0).max(50).default(3),
  /** Backoff base and cap between retries, milliseconds (exponential with full jitter). */
  RETRY_BASE_MS: z.coerce.number().int().min(1).default(500),
  RETRY_MAX_MS: z.coerce.number().int().min(1).default(30_000),
  /** Commands handled at once by one process. */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
  /**
   * Fault injection for tests and drills: each handler waits this long (milliseconds) before it
   * runs, so a worker can be killed mid-command. 0 in production.
   */
  FAULT_INJECT_HANDLER_DELAY_MS: z.coerce.number().int().min(0).default(0),
});
export type CommandWorkerConfig = z.infer<typeof CommandWorkerConfig>;

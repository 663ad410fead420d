import { BaseConfig } from "@nexus/runtime";
import { z } from "zod";

/**
 * Archiver configuration (services/archiver/README.md). Units are in the names, defaults
 * beside them. Parsed once in `main.ts`; tests parse it from a literal object.
 */
export const ArchiverConfig = BaseConfig.extend({
  /** HTTP port of /health, /ready and /metrics (8084). */
  PORT: z.coerce.number().int().min(0).max(65535).default(8084),
  /** Reports archived per Postgres transaction at most (1000). */
  ARCHIVER_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(1000),
  /**
   * Once a report waits, how long to wait for more before archiving a smaller batch, ms (100):
   * fewer, larger transactions under a steady trickle, for that much more archive lag.
   */
  ARCHIVER_LINGER_MS: z.coerce.number().int().min(0).max(10_000).default(100),
  /** After a failed batch (Postgres or NATS down), first and largest retry delay, ms (exponential, full jitter). */
  RETRY_BASE_MS: z.coerce.number().int().min(1).default(200),
  RETRY_MAX_MS: z.coerce.number().int().min(1).default(10_000),
  /** How often the lag (stream last sequence − archived sequence) and the consumer are read, ms (5000). */
  ARCHIVER_LAG_POLL_MS: z.coerce.number().int().min(50).default(5000),
  /** Days an archived report is kept (365); older ones are pruned. The stream service reads the same variable. */
  ARCHIVE_KEEP_DAYS: z.coerce.number().min(1).max(36_500).default(365),
  /** How often retention pruning runs, ms (3600000 = hourly; 0 = never in this process). */
  ARCHIVE_PRUNE_INTERVAL_MS: z.coerce.number().int().min(0).default(3_600_000),
  /** Archive rows deleted per pruning transaction (5000). */
  ARCHIVE_PRUNE_BATCH: z.coerce.number().int().min(1).max(100_000).default(5000),
  /**
   * Fault injection for tests and drills: comma-separated steps (`archiver:before-commit`,
   * `archiver:after-commit`, `archiver:after-ack`) at which the process kills itself with SIGKILL.
   */
  FAULT_INJECT_CRASH_AT: z.string().default(""),
});
export type ArchiverConfig = z.infer<typeof ArchiverConfig>;

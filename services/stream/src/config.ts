import { AuthConfig } from "@nexus/http";
import { BaseConfig } from "@nexus/runtime";
import { z } from "zod";

/**
 * Stream service configuration. Units are in the names, defaults beside them. Parsed once in
 * `main.ts` with `parseConfig(StreamConfig, process.env)`; tests parse it from a literal object.
 */
export const StreamConfig = BaseConfig.extend(AuthConfig.shape).extend({
  /**
   * Requests wait on Postgres at most about 2 s, then answer 503 DEPENDENCY_UNAVAILABLE: a pooled
   * connection within 1 s (1000), a statement 1 s on the server and 2 s on the client (1000;
   * the client's bound also covers a Postgres that stopped answering altogether).
   */
  PG_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(50).default(1000),
  PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(1000),
  /** HTTP port (8081). */
  PORT: z.coerce.number().int().min(0).max(65535).default(8081),
  /** Interval of `ping` events on every connection, milliseconds (15000, docs/contract.md). */
  SSE_HEARTBEAT_MS: z.coerce.number().int().min(10).default(15_000),
  /**
   * A live connection whose socket holds more than this many unsent bytes is ended (1 MiB); the
   * client reconnects with `Last-Event-ID` and replay covers what it missed.
   */
  SSE_MAX_BUFFERED_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  /**
   * While sending a snapshot or replaying, the service waits for a full socket buffer to drain
   * instead of ending the connection; past this many milliseconds (30000) it gives up and ends it.
   */
  SSE_DRAIN_TIMEOUT_MS: z.coerce.number().int().min(10).default(30_000),
  /** Reports each tenant hub keeps for connections that join slightly behind live (1000). */
  HUB_BUFFER_SIZE: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  /** …and at most this many bytes of them per tenant (8 MiB): large reports evict earlier ones. */
  HUB_BUFFER_BYTES: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .default(8 * 1024 * 1024),
  /** Open streams per tenant on one instance before `429` (500). */
  STREAM_MAX_PER_TENANT: z.coerce.number().int().min(1).default(500),
  /** Open streams per principal of a tenant on one instance before `429` (100). */
  STREAM_MAX_PER_PRINCIPAL: z.coerce.number().int().min(1).default(100),
  /** A hub without connections stops after this many milliseconds (5000). */
  HUB_IDLE_MS: z.coerce.number().int().min(0).default(5000),
  /**
   * Idle heartbeat of each hub's JetStream reader, milliseconds (1000); a reader silent for
   * three of them is restarted from its last sequence.
   */
  HUB_HEARTBEAT_MS: z.coerce.number().int().min(500).max(30_000).default(1000),
  /**
   * How often a quiet hub asks JetStream whether its tenant has newer reports than it holds,
   * milliseconds (5000); newer reports on two probes in a row restart the reader.
   */
  HUB_PROBE_MS: z.coerce.number().int().min(100).default(5000),
  /** Commands the snapshot's worklog holds, newest first (200). */
  STREAM_WORKLOG_KEEP: z.coerce.number().int().min(1).max(10_000).default(200),
  /** Reports fetched per JetStream pull while replaying from a cursor (256). */
  REPLAY_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(256),
  /**
   * Days an archived report stays a valid cursor (365): older cursors are `CURSOR_EXPIRED`
   * even before the archiver's pruning has deleted them. Same variable as the archiver's.
   */
  ARCHIVE_KEEP_DAYS: z.coerce.number().min(1).max(36_500).default(365),
  /** Reports read per archive query while replaying a cursor older than JetStream's retention (1000). */
  ARCHIVE_REPLAY_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(1000),
  /**
   * How long to wait for the archiver, ms (2000): at the end of an archive replay, for it to
   * store the next report when JetStream no longer holds it (then the connection ends and the
   * client resumes); and for a resume cursor that JetStream no longer holds and the archiver
   * has not reached yet (then `CURSOR_EXPIRED` and a snapshot).
   */
  ARCHIVE_WAIT_MS: z.coerce.number().int().min(0).default(2000),
  /** Replay cursors older than JetStream's retention from the Postgres archive (true). */
  ARCHIVE_REPLAY: z
    .enum(["true", "false", "1", "0"])
    .default("true")
    .transform((v) => v === "true" || v === "1"),
});
export type StreamConfig = z.infer<typeof StreamConfig>;

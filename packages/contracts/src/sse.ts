import { z } from "zod";
import { ApiError } from "./errors.ts";
import { Causality } from "./reports.ts";
import { Tenant } from "./tenant.ts";

/**
 * SSE event names of `GET /agent/reports/stream` (LOCKED): `snapshot` and `report` carry an
 * `id:`; `ping`, `error` and `progress` carry none.
 */
export const SseEventName = z.enum(["snapshot", "report", "ping", "error", "progress"]);
export type SseEventName = z.infer<typeof SseEventName>;

/** `data` of a `ping` event. `ping` carries no `id:` so it never moves Last-Event-ID. */
export const PingEvent = z.object({ ts: z.string() });
export type PingEvent = z.infer<typeof PingEvent>;

/** `data` of an SSE `error` event: the standard error body without HTTP status. */
export const ErrorEvent = z.object({ error: ApiError, ts: z.string() });
export type ErrorEvent = z.infer<typeof ErrorEvent>;

/**
 * Live progress of one long command (docs/contract.md "`event: progress`").
 * - `stage`: what the command is doing (`drafting`, `map`, `reduce`, …), a short token.
 * - `percent`: 0–100 when the command can tell.
 * - `text_delta`: text produced since the previous progress event of this command and stage
 *   (e.g. the draft body as the model writes it); concatenating the deltas of one stage gives
 *   the text so far. The `command.completed` report carries the full, validated result.
 */
export const CommandProgress = z.object({
  command_id: z.string(),
  stage: z.string().min(1).max(64),
  percent: z.number().min(0).max(100).optional(),
  text_delta: z.string().optional(),
});
export type CommandProgress = z.infer<typeof CommandProgress>;

/**
 * `data` of an SSE `progress` event, also the payload published on the core NATS subject
 * `nexus.progress.<org>.<project>` (see `subjects.progress`). Live only: it has no `id:`, is not
 * stored in JetStream, is never replayed and never moves the client's Last-Event-ID. At most a
 * few per second per command (the command-worker coalesces).
 */
export const ProgressEvent = z.object({
  progress: CommandProgress,
  causality: Causality,
  tenant: Tenant,
  /** ISO 8601 time the progress was published. */
  ts: z.string(),
});
export type ProgressEvent = z.infer<typeof ProgressEvent>;

/** The `retry:` hint sent first on every connection, in milliseconds. */
export const SSE_RETRY_MS = 3000;

/** A report_id / cursor: a decimal JetStream sequence without sign or leading zeros. */
export const CURSOR_RE = /^(0|[1-9][0-9]{0,15})$/;

/** Parses a cursor; `null` when it is not a valid report_id. */
export function parseCursor(s: string | undefined | null): number | null {
  if (s == null || !CURSOR_RE.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

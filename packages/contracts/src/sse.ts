import { z } from "zod";
import { ApiError } from "./errors.ts";

/** SSE event names of `GET /agent/reports/stream` (LOCKED). */
export const SseEventName = z.enum(["snapshot", "report", "ping", "error"]);
export type SseEventName = z.infer<typeof SseEventName>;

/** `data` of a `ping` event. `ping` carries no `id:` so it never moves Last-Event-ID. */
export const PingEvent = z.object({ ts: z.string() });
export type PingEvent = z.infer<typeof PingEvent>;

/** `data` of an SSE `error` event: the standard error body without HTTP status. */
export const ErrorEvent = z.object({ error: ApiError, ts: z.string() });
export type ErrorEvent = z.infer<typeof ErrorEvent>;

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

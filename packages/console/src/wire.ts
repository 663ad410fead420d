/**
 * Turning the stream's and the API's JSON into typed values.
 *
 * Shapes are checked with the contracts' zod schemas (the one place a wire shape is written),
 * but the values kept are the *received* objects, with the schema's defaults filled in: zod
 * strips keys it does not know, and the console reads optional fields that newer back ends add
 * before the contracts name them (`principal` on the snapshot, `requested_by` /
 * `approvals_required` / `approvals` on asks, `note` / `approvals` on `ask.decided`, `version` on
 * `settings.updated`). Unknown keys are harmless by the contract ("consumers must treat unknown
 * fields as optional").
 */
import { ErrorEvent, ReportEvent, type Snapshot, SnapshotEvent } from "@nexus/contracts";

/** An error body as the console shows it: any UPPER_SNAKE `code` (the catalogue grows, e.g. `ACCEPT_UNCONFIRMED`). */
export interface WireError {
  code: string;
  message: string;
  recoverable: boolean;
  details?: { path: string; issue: string }[];
  stage?: string;
}

/** `data` of an SSE `progress` event (live only: no id, never replayed). */
export interface ProgressEvent {
  progress: { command_id: string; stage: string; percent?: number; text_delta?: string };
  ts?: string;
}

/** Why an event was refused. */
export interface ParseProblem {
  event: string;
  reason: string;
}

/** A `snapshot` event as received, with the optional fields the contracts do not name yet. */
export type SnapshotWire = SnapshotEvent & { snapshot: Snapshot & { principal?: unknown } };

/** A parsed stream event. */
export type WireEvent =
  | { kind: "snapshot"; event: SnapshotWire }
  | { kind: "report"; event: ReportEvent }
  | { kind: "error"; event: { error: WireError; ts: string } }
  | { kind: "progress"; event: ProgressEvent }
  | { kind: "ping" };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * `parsed` (zod's output: known keys, defaults applied) with every key of `raw` that zod
 * dropped put back, recursively. Arrays are merged element by element.
 */
export function withExtras<T>(parsed: T, raw: unknown): T {
  if (Array.isArray(parsed)) {
    if (!Array.isArray(raw)) return parsed;
    return parsed.map((v, i) => withExtras(v, raw[i])) as T;
  }
  if (!isObject(parsed) || !isObject(raw)) return parsed;
  const out: Record<string, unknown> = { ...raw };
  for (const [k, v] of Object.entries(parsed)) out[k] = withExtras(v, raw[k]);
  return out as T;
}

/** Reads an error object leniently: any code string, a message, `recoverable` (default false). */
export function readError(v: unknown): WireError | null {
  if (!isObject(v) || typeof v.code !== "string" || !/^[A-Z][A-Z0-9_]*$/.test(v.code)) return null;
  const details = Array.isArray(v.details)
    ? v.details.filter(
        (d): d is { path: string; issue: string } =>
          isObject(d) && typeof d.path === "string" && typeof d.issue === "string",
      )
    : undefined;
  return {
    code: v.code,
    message: typeof v.message === "string" ? v.message : "",
    recoverable: v.recoverable === true,
    ...(details && details.length > 0 ? { details } : {}),
    ...(typeof v.stage === "string" ? { stage: v.stage } : {}),
  };
}

function readProgress(json: unknown): ProgressEvent | null {
  if (!isObject(json) || !isObject(json.progress)) return null;
  const p = json.progress;
  if (typeof p.command_id !== "string" || typeof p.stage !== "string") return null;
  return {
    progress: {
      command_id: p.command_id,
      stage: p.stage,
      ...(typeof p.percent === "number" && Number.isFinite(p.percent)
        ? { percent: Math.max(0, Math.min(100, p.percent)) }
        : {}),
      ...(typeof p.text_delta === "string" ? { text_delta: p.text_delta } : {}),
    },
    ...(typeof json.ts === "string" ? { ts: json.ts } : {}),
  };
}

/**
 * Turns one SSE event (name and raw `data`) into a {@link WireEvent}; `null` for unknown names or
 * data that does not fit (`onProblem` says why).
 */
export function parseStreamEvent(name: string, data: string, onProblem?: (p: ParseProblem) => void): WireEvent | null {
  if (name === "ping") return { kind: "ping" };
  if (name !== "snapshot" && name !== "report" && name !== "error" && name !== "progress") {
    onProblem?.({ event: name, reason: "unknown event name" });
    return null;
  }
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    onProblem?.({ event: name, reason: "data is not JSON" });
    return null;
  }
  if (name === "progress") {
    const p = readProgress(json);
    if (!p) onProblem?.({ event: name, reason: "not a progress object" });
    return p ? { kind: "progress", event: p } : null;
  }
  if (name === "error") {
    // Checked leniently: a newer server may send a code the contracts do not list yet.
    const strict = ErrorEvent.safeParse(json);
    const error = readError(isObject(json) ? json.error : null);
    if (!error) {
      onProblem?.({ event: name, reason: "not an error body" });
      return null;
    }
    return { kind: "error", event: { error, ts: strict.success ? strict.data.ts : new Date().toISOString() } };
  }
  const schema = name === "snapshot" ? SnapshotEvent : ReportEvent;
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    onProblem?.({
      event: name,
      reason: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    });
    return null;
  }
  // A report's schema has no defaults or transforms: once it validates, the received object is
  // the parsed one plus the keys zod would strip (no copy per report). The snapshot's has defaults.
  return name === "snapshot"
    ? { kind: "snapshot", event: withExtras(parsed.data, json) as SnapshotWire }
    : { kind: "report", event: json as ReportEvent };
}

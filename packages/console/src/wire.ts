/**
 * The console's types for what the stream and the API carry. Parsing is the SDK's
 * (`@nexus/client`, in its received-object mode: the contracts' zod schemas check each event,
 * and the received object is kept, so optional fields newer back ends add before the contracts
 * name them survive: `principal` on the snapshot, `requested_by` / `approvals_required` /
 * `approvals` on asks, `note` / `approvals` on `ask.decided`, `version` on `settings.updated`).
 */
import type { ReportEvent, Snapshot, SnapshotEvent } from "@nexus/contracts";

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

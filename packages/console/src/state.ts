/**
 * The console's state machine: what the page knows, and the only way it changes.
 *
 * Pure (no DOM, no timers, no I/O) so that it can be unit-tested. The page feeds it the
 * events of `GET /agent/reports/stream` (LOCKED rule 1: nothing else changes state) plus the
 * connection's open/lost signals, and renders whatever {@link reduce} returns.
 *
 * Rules (CONTRACT.md "GET /agent/reports/stream"):
 * - `snapshot`: replaces the whole state; its `report_id` becomes the cursor.
 * - `report`: applied with `applyReport` from the contracts unless its `report_id` is at or
 *   below the cursor (delivery is at least once; dedupe by `report_id`).
 * - `error` with `CURSOR_EXPIRED`: the next snapshot replaces the state and the connection is
 *   shown as `resynced`.
 * - `ping`: nothing.
 */
import {
  type ApiError,
  type Ask,
  applyReport,
  ErrorEvent,
  parseCursor,
  ReportEvent,
  type Snapshot,
  SnapshotEvent,
  type WorklogEntry,
} from "@nexus/contracts";

/** What the connection badge shows. */
export type ConnState = "connecting" | "live" | "reconnecting" | "resynced";

/** Everything the page renders from the stream. */
export interface ConsoleState {
  /** The tenant's state as of {@link ConsoleState.lastId}; `null` before the first snapshot. */
  snapshot: Snapshot | null;
  /** `report_id` of the last snapshot or applied report (the cursor for a resume); `null` before any. */
  lastId: number | null;
  /** `report_id`s of the reports applied, in order (for tests: each id must appear once). */
  applied: string[];
  connState: ConnState;
  /** A `CURSOR_EXPIRED` error arrived; the next snapshot completes the resync. */
  resyncPending: boolean;
  /** The most recently applied report, for announcements and matching pending requests. */
  lastReport: ReportEvent | null;
  /** The last SSE `error` event's body. */
  lastStreamError: ApiError | null;
}

/** Inputs of {@link reduce}: parsed SSE events and connection signals. */
export type StreamAction =
  | { kind: "snapshot"; event: SnapshotEvent }
  | { kind: "report"; event: ReportEvent }
  | { kind: "error"; event: ErrorEvent }
  | { kind: "ping" }
  /** The EventSource opened (a new connection or an automatic reconnection). */
  | { kind: "open" }
  /** The connection was lost; the browser or the client retries. */
  | { kind: "disconnected" }
  /** A new tenant or a fresh start: forget everything. */
  | { kind: "reset" };

/** How many entries {@link ConsoleState.applied} keeps (the oldest are dropped first). */
export const APPLIED_LIMIT = 10_000;

/** The state before anything was received: no snapshot, `connecting`. */
export function initialState(): ConsoleState {
  return {
    snapshot: null,
    lastId: null,
    applied: [],
    connState: "connecting",
    resyncPending: false,
    lastReport: null,
    lastStreamError: null,
  };
}

/**
 * Returns the state after `action`. The input is never mutated; when an action changes
 * nothing (a duplicate report, a ping) the very same object is returned, so callers can skip
 * rendering by comparing identities.
 */
export function reduce(state: ConsoleState, action: StreamAction): ConsoleState {
  switch (action.kind) {
    case "snapshot": {
      const id = parseCursor(action.event.report_id);
      return {
        ...state,
        snapshot: action.event.snapshot,
        lastId: id,
        connState: state.resyncPending ? "resynced" : "live",
        resyncPending: false,
      };
    }
    case "report": {
      const ev = action.event;
      const id = parseCursor(ev.report_id);
      // A report without a base to apply it to, or with an id we cannot order, is dropped:
      // the server always sends a snapshot first on a connection without a cursor.
      if (state.snapshot === null || id === null) return state;
      if (state.lastId !== null && id <= state.lastId) return state;
      const applied =
        state.applied.length >= APPLIED_LIMIT
          ? [...state.applied.slice(state.applied.length - APPLIED_LIMIT + 1), ev.report_id]
          : [...state.applied, ev.report_id];
      return { ...state, snapshot: applyReport(state.snapshot, ev), lastId: id, applied, lastReport: ev };
    }
    case "error":
      return {
        ...state,
        lastStreamError: action.event.error,
        resyncPending: state.resyncPending || action.event.error.code === "CURSOR_EXPIRED",
      };
    case "ping":
      return state;
    case "open":
      return state.connState === "live" ? state : { ...state, connState: "live" };
    case "disconnected":
      return state.connState === "reconnecting" ? state : { ...state, connState: "reconnecting" };
    case "reset":
      return initialState();
  }
}

/** Why {@link parseStreamEvent} refused an event. */
export interface ParseProblem {
  event: string;
  reason: string;
}

/**
 * Turns one SSE event (its name and raw `data`) into a {@link StreamAction}, validating the
 * JSON with the contracts' zod schemas. Returns `null` for unknown event names or data that
 * does not parse; `onProblem` is told why (the caller logs it).
 */
export function parseStreamEvent(
  name: string,
  data: string,
  onProblem?: (p: ParseProblem) => void,
): StreamAction | null {
  if (name === "ping") return { kind: "ping" };
  const schema =
    name === "snapshot" ? SnapshotEvent : name === "report" ? ReportEvent : name === "error" ? ErrorEvent : null;
  if (schema === null) {
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
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    onProblem?.({
      event: name,
      reason: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    });
    return null;
  }
  if (name === "snapshot") return { kind: "snapshot", event: parsed.data as SnapshotEvent };
  if (name === "report") return { kind: "report", event: parsed.data as ReportEvent };
  return { kind: "error", event: parsed.data as ErrorEvent };
}

/** Asks still waiting for a decision, oldest expiry first. */
export function openAsks(s: Snapshot | null): Ask[] {
  if (!s) return [];
  return s.asks
    .filter((a) => (a.status ?? "open") === "open")
    .sort((a, b) => Date.parse(a.expires_at) - Date.parse(b.expires_at));
}

/** Asks that were decided, ran, failed, were cancelled or expired; most recent first (snapshot order reversed). */
export function resolvedAsks(s: Snapshot | null): Ask[] {
  if (!s) return [];
  return s.asks.filter((a) => (a.status ?? "open") !== "open").reverse();
}

/** The worklog entry of a command, if the stream has told about it. */
export function findWork(s: Snapshot | null, commandId: string): WorklogEntry | undefined {
  return s?.worklog.find((w) => w.command_id === commandId);
}

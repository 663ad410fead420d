/**
 * Holds the {@link LiveState} of the tenant shown and tells subscribers when it changed — at most
 * once per animation frame (in a task of its own, right after the frame), however many reports
 * arrived in between, and during a burst (more than {@link BURST_CHANGES} changes between two
 * renders) at most every {@link BURST_FRAME_MS}:
 * 500 reports a second cost ten renders a second, not 500. Also mirrors the state to
 * `window.__nexus` for browser tests: a new object whenever the connection state changes (tests
 * record the sequence) and once per frame otherwise; `state` is computed only when read.
 */
import type { ReportEvent, Snapshot, Tenant } from "@nexus/contracts";
import {
  applyConn,
  applyHistory,
  applyProgress,
  applyReportEvent,
  applySnapshot,
  applyStreamError,
  type ConnState,
  createLiveState,
  type LiveState,
  snapshotView,
} from "./state.ts";
import type { WireEvent } from "./wire.ts";

/** What browser tests read from `window.__nexus`. */
export interface NexusDebug {
  /** `report_id`s applied, in order; a duplicate delivery never appears twice. */
  readonly applied: string[];
  /** The current state as a snapshot (computed when read), `null` before the first snapshot. */
  readonly state: Snapshot | null;
  readonly connState: ConnState;
  /** The cursor: `report_id` of the last snapshot or applied report. */
  readonly lastId: number | null;
  readonly tenant: Tenant | null;
  /** How many times the page rendered after a state change (for the load test). */
  readonly renders: number;
}

declare global {
  interface Window {
    __nexus?: NexusDebug;
  }
}

/** Inputs besides the stream's events: connection signals and a reset. */
export type StoreAction = WireEvent | { kind: "open" } | { kind: "disconnected" } | { kind: "reset" };

/** A minimal observable store. */
export interface Store {
  get(): LiveState;
  dispatch(action: StoreAction): void;
  /** Adds a page of the history endpoint. */
  addHistory(reports: ReportEvent[], nextBefore: string | null): number;
  /** `fn` runs after changes, at most once per animation frame (in a task of its own, see {@link afterFrame}). */
  subscribe(fn: (s: LiveState) => void): () => void;
  setTenant(t: Tenant): void;
  /** Counts a render (shown in `window.__nexus.renders`). */
  rendered(): void;
}

/** Changes between two renders above which the store renders less often. */
export const BURST_CHANGES = 8;
/** Time between renders during a burst, in ms. */
export const BURST_FRAME_MS = 100;

/** A scheduler: runs `fn` once, soon (see {@link afterFrame}). */
export type Schedule = (fn: () => void) => void;

/**
 * The default {@link Schedule}: `fn` runs in a task of its own posted right after the next
 * animation frame (a `MessageChannel` message sent from `requestAnimationFrame`, as React's
 * scheduler posts its work), or after 100 ms when no frame comes (a hidden tab gets none).
 *
 * Not in the `requestAnimationFrame` callback itself: there, the render's JavaScript and the
 * browser's style, layout and paint of what it changed are one task, and under a burst that
 * task was the console's longest (about 25 ms on a 2-core machine, past 50 ms on a slower or
 * busier one). Posted as a task, the render and its rendering are two tasks of about half
 * that each, with input handled between them — the remedy of web.dev's "Optimize long tasks"
 * (yield to the main thread). Measured with `test/browser/frame-trace.ts` (5,000 reports at
 * 500/s, Chromium's trace of the main thread, tasks of 4 ms or more; three medians of three
 * runs on a 2-core machine): p90 10–13 ms instead of 16, p99 20–22 ms instead of 27–31.
 */
export const afterFrame: Schedule = (fn) => {
  let ran = false;
  let frame = 0;
  let channel: MessageChannel | null = null;
  // Whichever way comes first runs `fn` and cancels the other: no timer left to fire for
  // nothing, no frame callback piling up while a tab stays hidden.
  const run = () => {
    if (ran) return;
    ran = true;
    clearTimeout(timer);
    if (frame) cancelAnimationFrame(frame);
    channel?.port1.close();
    fn();
  };
  if (typeof requestAnimationFrame === "function") {
    const ch = new MessageChannel();
    channel = ch;
    ch.port1.onmessage = run;
    frame = requestAnimationFrame(() => {
      frame = 0;
      ch.port2.postMessage(null);
    });
  }
  const timer = setTimeout(run, 100);
};

/**
 * Creates a store. `expose` mirrors it to `window.__nexus` (the page); `schedule` decides when
 * subscribers run (tests pass a synchronous one).
 */
export function createStore(expose = typeof window !== "undefined", schedule: Schedule = afterFrame): Store {
  let state = createLiveState();
  let tenant: Tenant | null = null;
  let renders = 0;
  let pending = false;
  let changes = 0;
  let lastFlush = 0;
  let delayed = false;
  const listeners = new Set<(s: LiveState) => void>();

  const mirror = () => {
    if (!expose) return;
    const s = state;
    window.__nexus = {
      applied: s.applied,
      get state() {
        return snapshotView(s);
      },
      connState: s.connState,
      lastId: s.lastId,
      tenant,
      renders,
    };
  };
  const flush = () => {
    pending = false;
    delayed = false;
    changes = 0;
    lastFlush = Date.now();
    mirror();
    for (const fn of listeners) fn(state);
  };
  const changed = () => {
    changes++;
    if (!pending) {
      pending = true;
      throttled(flush);
    }
  };
  // A scheduled frame during a burst waits until BURST_FRAME_MS have passed since the last render.
  const throttled: Schedule = (fn) =>
    schedule(() => {
      const wait = lastFlush + BURST_FRAME_MS - Date.now();
      if (changes > BURST_CHANGES && wait > 0 && !delayed) {
        delayed = true;
        setTimeout(() => schedule(fn), wait);
      } else fn();
    });
  mirror();

  return {
    get: () => state,
    dispatch(action) {
      const conn = state.connState;
      switch (action.kind) {
        case "snapshot":
          applySnapshot(state, action.event);
          break;
        case "report":
          if (!applyReportEvent(state, action.event)) return;
          break;
        case "progress":
          if (!applyProgress(state, action.event)) return;
          break;
        case "error":
          applyStreamError(state, action.event.error);
          break;
        case "ping":
          return;
        case "open":
        case "disconnected":
          if (!applyConn(state, action.kind)) return;
          break;
        case "reset":
          state = createLiveState();
          break;
      }
      if (state.connState !== conn || action.kind === "reset") mirror();
      changed();
    },
    addHistory(reports, nextBefore) {
      const n = applyHistory(state, reports, nextBefore);
      changed();
      return n;
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    setTenant(t) {
      tenant = t;
      mirror();
    },
    rendered() {
      renders++;
    },
  };
}

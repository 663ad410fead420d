/**
 * Holds the {@link ConsoleState} and tells subscribers when it changes. Also mirrors it to
 * `window.__nexus` for browser tests.
 */
import type { Snapshot, Tenant } from "@nexus/contracts";
import { type ConnState, type ConsoleState, initialState, reduce, type StreamAction } from "./state.ts";

/** What browser tests read from `window.__nexus`. */
export interface NexusDebug {
  /** `report_id`s applied, in order; a duplicate delivery never appears twice. */
  applied: string[];
  /** The current tenant state (the last snapshot plus applied reports), `null` before the first snapshot. */
  state: Snapshot | null;
  connState: ConnState;
  /** The cursor: `report_id` of the last snapshot or applied report. */
  lastId: number | null;
  tenant: Tenant | null;
}

declare global {
  interface Window {
    __nexus?: NexusDebug;
  }
}

/** A minimal observable store around {@link reduce}. */
export interface Store {
  get(): ConsoleState;
  dispatch(action: StreamAction): void;
  subscribe(fn: (s: ConsoleState) => void): () => void;
  /** Records which tenant the state belongs to (for `window.__nexus`). */
  setTenant(t: Tenant): void;
}

/** Creates a store; when `expose` is true (the page), every change is mirrored to `window.__nexus`. */
export function createStore(expose = typeof window !== "undefined"): Store {
  let state = initialState();
  let tenant: Tenant | null = null;
  const listeners = new Set<(s: ConsoleState) => void>();
  const mirror = () => {
    if (!expose) return;
    window.__nexus = {
      applied: state.applied,
      state: state.snapshot,
      connState: state.connState,
      lastId: state.lastId,
      tenant,
    };
  };
  mirror();
  return {
    get: () => state,
    dispatch(action) {
      const next = reduce(state, action);
      if (next === state) return;
      state = next;
      mirror();
      for (const fn of listeners) fn(state);
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    setTenant(t) {
      tenant = t;
      mirror();
    },
  };
}

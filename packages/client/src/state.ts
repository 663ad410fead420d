import { applyReport, type ReportEvent, type Snapshot, type SnapshotEvent } from "@nexus/contracts";
import { NexusApiError } from "./errors.ts";
import { compareReportIds } from "./reports.ts";
import type { StreamEvent } from "./stream.ts";

/** What a {@link StateFollower} change callback receives. */
export type StateChangeListener = (state: Snapshot, cause: SnapshotEvent | ReportEvent) => void;

/**
 * Keeps the tenant's current {@link Snapshot}: the latest `snapshot`, with every later `report`
 * applied by the contracts' `applyReport` — docs/contract.md "The report stream": "Applying
 * every report with report_id greater than the snapshot's to the snapshot gives the current
 * state". It does no I/O: feed it {@link StreamEvent}s (see `NexusClient.follow`).
 *
 * Reports at or below the state's report_id are ignored, so feeding the same events twice is
 * harmless. Reports before the first snapshot are ignored too (there is nothing to apply them
 * to) unless the follower was created with an `initial` state.
 */
export class StateFollower {
  private state: Snapshot | undefined;
  private id: string | undefined;
  private readonly listeners = new Set<StateChangeListener>();

  /** @param initial a known state and the report_id it stands for (e.g. kept across page loads). */
  constructor(initial?: { snapshot: Snapshot; report_id: string }) {
    this.state = initial?.snapshot;
    this.id = initial?.report_id;
  }

  /** The current state, or `undefined` before the first snapshot. Treat it as immutable. */
  getState(): Snapshot | undefined {
    return this.state;
  }

  /** The report_id the current state stands for. */
  get reportId(): string | undefined {
    return this.id;
  }

  /**
   * Registers `fn`, called after every change with the new state and the event that caused it.
   * @returns a function that unregisters it.
   */
  onChange(fn: StateChangeListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Applies one stream event: a `snapshot` replaces the state, a newer `report` is applied;
   * everything else is ignored.
   * @returns true when the state changed.
   */
  apply(ev: StreamEvent): boolean {
    if (ev.type === "snapshot") {
      this.state = ev.data.snapshot;
      this.id = ev.data.report_id;
      this.emit(ev.data);
      return true;
    }
    if (ev.type === "report") return this.applyReport(ev.data);
    return false;
  }

  /** Applies one report (from the stream or a history page) when it is newer than the state. */
  applyReport(r: ReportEvent): boolean {
    if (!this.state || (this.id !== undefined && compareReportIds(r.report_id, this.id) <= 0)) return false;
    this.state = applyReport(this.state, r);
    this.id = r.report_id;
    this.emit(r);
    return true;
  }

  private emit(cause: SnapshotEvent | ReportEvent): void {
    const s = this.state as Snapshot;
    for (const fn of this.listeners) fn(s, cause);
  }
}

/**
 * Waits for stream events: resolves with the first non-`undefined` value `pick` returns for a
 * recorded or future event.
 */
export class EventWaiter {
  private readonly seen: StreamEvent[] = [];
  private readonly waiters = new Set<(ev: StreamEvent) => void>();
  private failure: unknown;
  private readonly limit: number;

  /** @param limit how many past events are kept for late waiters (default 10 000). */
  constructor(limit = 10_000) {
    this.limit = limit;
  }

  /** Records an event and offers it to the waiters. */
  push(ev: StreamEvent): void {
    if (ev.type === "ping") return;
    this.seen.push(ev);
    if (this.seen.length > this.limit) this.seen.splice(0, this.seen.length - this.limit);
    for (const w of [...this.waiters]) w(ev);
  }

  /** Fails every current and later waiter (the stream ended). */
  fail(err: unknown): void {
    this.failure = err;
    for (const w of [...this.waiters]) w({ type: "ping", data: { ts: "" } });
  }

  /** Every recorded event (pings excluded), oldest first. */
  events(): readonly StreamEvent[] {
    return this.seen;
  }

  /**
   * @throws {NexusApiError} `STREAM_TIMEOUT` after `timeoutMs` (default 30 000); the stream's
   *   error when it ended; the signal's reason when aborted.
   */
  waitFor<T>(
    pick: (ev: StreamEvent) => T | undefined,
    o: { timeoutMs?: number; signal?: AbortSignal; what?: string } = {},
  ): Promise<T> {
    for (const ev of this.seen) {
      const v = pick(ev);
      if (v !== undefined) return Promise.resolve(v);
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const timeoutMs = o.timeoutMs ?? 30_000;
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        o.signal?.removeEventListener("abort", onAbort);
      };
      const waiter = (ev: StreamEvent) => {
        if (this.failure !== undefined) {
          done();
          reject(this.failure);
          return;
        }
        let v: T | undefined;
        try {
          v = pick(ev);
        } catch (err) {
          done();
          reject(err);
          return;
        }
        if (v !== undefined) {
          done();
          resolve(v);
        }
      };
      const onAbort = () => {
        done();
        reject(o.signal?.reason);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new NexusApiError({
            code: "STREAM_TIMEOUT",
            message: `no ${o.what ?? "matching event"} on the stream within ${timeoutMs} ms`,
            recoverable: true,
            status: 0,
          }),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
      o.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/**
 * The one connection that feeds the console: the SDK's report stream (`@nexus/client`
 * `events()`) on `GET /agent/reports/stream`, turned into the store's actions.
 *
 * The SDK reads the stream with `fetch`, so it sends what an EventSource cannot: the tenant
 * headers (header mode) and a real `Last-Event-ID` on every reconnection, which resumes after
 * the last snapshot or report with nothing missing and nothing twice (it also drops anything
 * at or below that cursor the server sends again). The console sets its policy:
 * - **received objects** (`keepReceived`): each snapshot and report is checked with the
 *   contracts' schemas but kept as received (no copy per report during a burst, and the
 *   optional fields the contracts do not name yet survive); `progress` is read leniently;
 * - **reconnection** after 1 s, 2 s, 4 s … at most 10 s (not the server's 3 s `retry:` floor);
 * - **signed in** (JWT mode): a fresh one-use ticket (`POST /agent/reports/ticket`, `?ticket=`)
 *   for every connection, never a token in a URL; after the stream's `CREDENTIAL_EXPIRED` the
 *   SDK renews the token first (`credentials().renew()`) and reconnects at once from the cursor.
 *
 * A ticket request refused with `401` (not `CREDENTIAL_EXPIRED`) tells the credential it was
 * refused, as every other request does (the page signs in again).
 *
 * When the SDK gives up (a 4xx that retrying cannot fix, e.g. a `403` for a tenant), this client
 * starts a new stream after the longest backoff, from the state's cursor.
 */
import { isNexusApiError, type LenientProgressEvent, type NexusClient, type StreamEvent } from "@nexus/client";
import type { Tenant } from "@nexus/contracts";
import { api } from "./api.ts";
import { credentials } from "./credentials.ts";
import type { StoreAction } from "./store.ts";
import type { ProgressEvent, SnapshotWire } from "./wire.ts";

/** Why an event was not passed on. */
export interface ParseProblem {
  event: string;
  reason: string;
}

/** Options of {@link StreamClient}. */
export interface StreamClientOptions {
  tenant: Tenant;
  /** The cursor to resume from when this client starts a new stream (the state's `lastId`). */
  getCursor(): number | null;
  /** Receives every parsed event and the connection's open/lost signals. */
  dispatch(action: StoreAction): void;
  /** Ticket mode (signed in): a fresh one-use ticket for each connection. */
  ticket?: boolean;
  /** The SDK client; by default {@link api} for `tenant` (tests pass one with their own `fetch`). */
  client?: NexusClient;
  /** First backoff delay in ms (default 1000); doubled per failed attempt. */
  backoffInitialMs?: number;
  /** Largest backoff delay in ms (default 10000). */
  backoffMaxMs?: number;
  /** Where events that could not be read are reported (default `console.warn`). */
  onProblem?: (p: ParseProblem) => void;
}

/** Backoff delay before reconnection attempt `attempt` (0-based): 1 s, 2 s, 4 s … capped. */
export function backoffDelay(attempt: number, initialMs = 1000, maxMs = 10_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/** Owns the stream connection of one tenant. Call {@link StreamClient.start} once and {@link StreamClient.stop} to end it. */
export class StreamClient {
  private ac = new AbortController();
  private readonly o: StreamClientOptions & Required<Pick<StreamClientOptions, "backoffInitialMs" | "backoffMaxMs">>;

  constructor(options: StreamClientOptions) {
    this.o = { backoffInitialMs: 1000, backoffMaxMs: 10_000, ...options };
  }

  /** Opens the first connection: without a cursor, so the server starts with a snapshot. */
  start(): void {
    this.ac = new AbortController();
    void this.run(this.ac.signal);
  }

  /** Closes the connection and cancels a pending reconnection; no more actions are dispatched. */
  stop(): void {
    this.ac.abort();
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { backoffInitialMs: first, backoffMaxMs: max } = this.o;
    const client = this.o.client ?? api(this.o.tenant);
    let cursor: number | null = null;
    while (!signal.aborted) {
      const stream = client.events({
        keepReceived: true,
        ticket: this.o.ticket ?? false,
        signal,
        ...(cursor === null ? {} : { cursor: String(cursor) }),
        reconnectDelay: (failure) => backoffDelay(failure - 1, first, max),
      });
      try {
        for await (const ev of stream) {
          if (signal.aborted) return;
          this.handle(ev);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.o.dispatch({ kind: "disconnected" });
        this.problem({ event: "stream", reason: err instanceof Error ? err.message : String(err) });
      }
      await wait(max, signal);
      cursor = this.o.getCursor();
    }
  }

  private problem(p: ParseProblem): void {
    (this.o.onProblem ?? ((x: ParseProblem) => console.warn(`[nexus] ignored SSE ${x.event} event: ${x.reason}`)))(p);
  }

  private handle(ev: StreamEvent<LenientProgressEvent>): void {
    const d = this.o.dispatch;
    switch (ev.type) {
      case "open":
        d({ kind: "open" });
        return;
      case "reconnecting":
        d({ kind: "disconnected" });
        // The ticket request was refused with the page's own token: sign in again.
        if (
          ev.ticketFailed &&
          isNexusApiError(ev.error) &&
          ev.error.status === 401 &&
          ev.error.code !== "CREDENTIAL_EXPIRED"
        )
          credentials().rejected();
        return;
      case "snapshot":
        d({ kind: "snapshot", event: ev.data as SnapshotWire });
        return;
      case "report":
        d({ kind: "report", event: ev.data });
        return;
      case "progress":
        d({ kind: "progress", event: ev.data as ProgressEvent });
        return;
      case "error": {
        const e = ev.data.error;
        const error = { code: e.code, message: e.message, recoverable: e.recoverable };
        d({ kind: "error", event: { error, ts: ev.data.ts } });
        return;
      }
      case "unrecognized":
        this.problem({ event: ev.event, reason: ev.issue });
        return;
      default:
        // ping, resynced: the state needs nothing (a snapshot after CURSOR_EXPIRED says it all).
        return;
    }
  }
}

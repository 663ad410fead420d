/**
 * The one connection that feeds the console: an EventSource on `GET /agent/reports/stream`.
 *
 * The browser reconnects by itself (re-sending `Last-Event-ID`) after a dropped connection.
 * It gives up, though, when a reconnection is answered with an HTTP error (502/503 while the
 * gateway or stream service restarts) or a wrong content type; the EventSource is then
 * CLOSED. This client notices that and opens a new EventSource after a backoff
 * (1 s, 2 s, 4 s … at most 10 s) with `?cursor=<last report_id>`, so replay continues
 * without a gap. Live `progress` events (no id) are passed on like the others.
 *
 * Signed in (JWT mode), every connection is opened with a fresh one-use ticket
 * (`?ticket=`, from `POST /agent/reports/ticket`): never a token in the URL. The browser's own
 * reconnection would present the used ticket again, so in that mode this client closes a lost
 * connection at once and opens the next one itself, with a new ticket and `?cursor=` (the
 * contract treats it as `Last-Event-ID`, which a new EventSource cannot send). When the stream
 * ends with `CREDENTIAL_EXPIRED`, the credential is renewed first and the next connection
 * follows at once, resuming after the last report: nothing missing, nothing twice.
 */
import type { Tenant } from "@nexus/contracts";
import type { StoreAction } from "./store.ts";
import { streamUrl } from "./tenant.ts";
import { type ParseProblem, parseStreamEvent } from "./wire.ts";

/** The part of `EventSource` this client uses (so tests can pass a fake). */
export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: Event) => unknown) | null;
  addEventListener(type: string, listener: (ev: Event) => void): void;
  close(): void;
}

/** `EventSource.CLOSED`. */
const CLOSED = 2;

/** Options of {@link StreamClient}. */
export interface StreamClientOptions {
  tenant: Tenant;
  /** The cursor to resume from when this client reconnects by itself (the state's `lastId`). */
  getCursor(): number | null;
  /** Receives every parsed event and the connection's open/lost signals. */
  dispatch(action: StoreAction): void;
  /**
   * Ticket mode: returns a fresh one-use ticket for each connection, or `null` when none could be
   * had (then the client waits its backoff and tries again).
   */
  ticket?: () => Promise<string | null>;
  /** Renews the credential after the stream's `CREDENTIAL_EXPIRED` event (ticket mode). */
  renew?: () => Promise<unknown>;
  /** Builds the EventSource; defaults to the browser's. */
  connect?: (url: string) => EventSourceLike;
  /** First backoff delay in ms (default 1000); doubled per failed attempt. */
  backoffInitialMs?: number;
  /** Largest backoff delay in ms (default 10000). */
  backoffMaxMs?: number;
  /** Where unparseable events are reported (default `console.warn`). */
  onProblem?: (p: ParseProblem) => void;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/** Backoff delay before reconnection attempt `attempt` (0-based): 1 s, 2 s, 4 s … capped. */
export function backoffDelay(attempt: number, initialMs = 1000, maxMs = 10_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
}

/** Owns the stream connection of one tenant. Call {@link StreamClient.start} once and {@link StreamClient.stop} to end it. */
export class StreamClient {
  private es: EventSourceLike | null = null;
  private timer: unknown = null;
  private attempt = 0;
  private stopped = false;
  /** The stream said `CREDENTIAL_EXPIRED`: renew before the next connection, and do not wait. */
  private expired = false;
  /** Counts connections, so a ticket arriving for a superseded one is dropped. */
  private generation = 0;
  private readonly o: Required<Omit<StreamClientOptions, "tenant" | "getCursor" | "dispatch" | "ticket" | "renew">> &
    Pick<StreamClientOptions, "tenant" | "getCursor" | "dispatch" | "ticket" | "renew">;

  constructor(options: StreamClientOptions) {
    this.o = {
      connect: (url) => new EventSource(url) as unknown as EventSourceLike,
      backoffInitialMs: 1000,
      backoffMaxMs: 10_000,
      onProblem: (p) => console.warn(`[nexus] ignored SSE ${p.event} event: ${p.reason}`),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
      ...options,
    };
  }

  /** Opens the first connection: without a cursor, so the server starts with a snapshot. */
  start(): void {
    this.stopped = false;
    this.open(null);
  }

  /** Closes the connection and cancels a pending reconnection; no more actions are dispatched. */
  stop(): void {
    this.stopped = true;
    this.generation++;
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
    this.es?.close();
    this.es = null;
  }

  private open(cursor: number | null): void {
    const gen = ++this.generation;
    if (!this.o.ticket) {
      this.attach(this.o.connect(streamUrl(this.o.tenant, cursor)));
      return;
    }
    const getTicket = this.o.ticket;
    void (async () => {
      if (this.expired) {
        this.expired = false;
        await this.o.renew?.();
      }
      const ticket = await getTicket();
      if (this.stopped || gen !== this.generation) return;
      if (ticket === null) {
        this.o.dispatch({ kind: "disconnected" });
        this.scheduleReconnect(null);
        return;
      }
      this.attach(this.o.connect(streamUrl(this.o.tenant, cursor, ticket)));
    })();
  }

  private attach(es: EventSourceLike): void {
    this.es = es;
    const live = () => !this.stopped && this.es === es;
    es.onopen = () => {
      if (!live()) return;
      this.attempt = 0;
      this.o.dispatch({ kind: "open" });
    };
    const onEvent = (ev: Event) => {
      if (!live()) return;
      const data = (ev as MessageEvent).data;
      const action = parseStreamEvent(ev.type, typeof data === "string" ? data : "", this.o.onProblem);
      if (action) this.o.dispatch(action);
    };
    es.addEventListener("snapshot", onEvent);
    es.addEventListener("report", onEvent);
    es.addEventListener("ping", onEvent);
    es.addEventListener("progress", onEvent);
    es.addEventListener("error", (ev) => {
      if (!live()) return;
      // `event: error` from the server arrives as a MessageEvent with data; a lost
      // connection is a plain Event. Both use the same event name.
      if (typeof (ev as MessageEvent).data === "string") {
        if (this.o.ticket && /"CREDENTIAL_EXPIRED"/.test((ev as MessageEvent).data)) this.expired = true;
        onEvent(ev);
        return;
      }
      this.o.dispatch({ kind: "disconnected" });
      // A used ticket cannot reconnect: in ticket mode every lost connection is reopened here.
      if (es.readyState === CLOSED || this.o.ticket) this.scheduleReconnect(es);
    });
  }

  private scheduleReconnect(es: EventSourceLike | null): void {
    es?.close();
    if (this.timer !== null) return;
    // After CREDENTIAL_EXPIRED the server ended the stream on purpose: reconnect at once.
    const delay = this.expired ? 0 : backoffDelay(this.attempt++, this.o.backoffInitialMs, this.o.backoffMaxMs);
    this.timer = this.o.setTimer(() => {
      this.timer = null;
      if (this.stopped) return;
      this.open(this.o.getCursor());
    }, delay);
  }
}

import { PingEvent, type ReportEvent, SnapshotEvent, SSE_RETRY_MS } from "@nexus/contracts";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { authHeaders, canRefreshCredential } from "./auth.ts";
import { parseRetryAfterMs, type RandomSource, reconnectDelayMs, sleep } from "./backoff.ts";
import { errorFromResponse, isNexusApiError, NexusApiError } from "./errors.ts";
import { buildUrl, type Transport } from "./http.ts";
import { compareReportIds, isReportId, parseReportEvent, withReceivedFields } from "./reports.ts";
import { LenientProgressEvent, ProgressEvent, StreamErrorEvent, type StreamTicket } from "./wire.ts";

/**
 * Glossary (docs/contract.md "The report stream"):
 * - **report_id**: decimal string, the JetStream sequence of a report; strictly increasing per
 *   tenant, not contiguous.
 * - **cursor**: the report_id of the last snapshot or report the client applied; sent as
 *   `Last-Event-ID` so the server replays every later report, in order, without gap or duplicate.
 * - **snapshot**: the tenant's state at one report_id; it comes first on a connection without a
 *   cursor, and after `CURSOR_EXPIRED`.
 */

/** A `snapshot` event: the tenant's state at `data.report_id`; replaces any state held before. */
export interface SnapshotStreamEvent {
  type: "snapshot";
  data: SnapshotEvent;
}
/** A `report` event; never one at or below the last snapshot/report emitted by this stream. */
export interface ReportStreamEvent {
  type: "report";
  data: ReportEvent;
}
/**
 * A live-only `progress` event (no id, never replayed; see `wire.ts` `ProgressEvent`).
 * `P` is `LenientProgressEvent` for a stream in received-object mode (`keepReceived`).
 */
export interface ProgressStreamEvent<P extends ProgressData = ProgressEvent> {
  type: "progress";
  data: P;
}
/** The `data` types a `progress` event can have: strict, or lenient (`keepReceived`). */
export type ProgressData = ProgressEvent | LenientProgressEvent;
/** An SSE `error` event: the standard error body without status. `CURSOR_EXPIRED` is followed by a snapshot. */
export interface ErrorStreamEvent {
  type: "error";
  data: StreamErrorEvent;
}
/** A heartbeat (every `SSE_HEARTBEAT_MS`, 15 s by default); carries no id. */
export interface PingStreamEvent {
  type: "ping";
  data: PingEvent;
}
/** A connection was established (status 200, `text/event-stream`). */
export interface OpenStreamEvent {
  type: "open";
  /** 1 for the first connection of this stream, then 2, 3, … */
  connection: number;
  /** The `Last-Event-ID` sent, or `null` (a snapshot comes first). */
  cursor: string | null;
}
/** The connection ended or could not be made; the stream reconnects after `delayMs`. */
export interface ReconnectingStreamEvent {
  type: "reconnecting";
  /** Consecutive failures (1 = the first reconnect after a connection that delivered events). */
  attempt: number;
  /** Milliseconds until the next connection attempt. */
  delayMs: number;
  /** `closed`: the server ended the response; `heartbeat_timeout`: nothing arrived for `heartbeatTimeoutMs`; `http_error`: a non-200 answer (see `error`); `network_error`: no answer or the body broke off. */
  reason: "closed" | "heartbeat_timeout" | "http_error" | "network_error";
  error?: unknown;
  /**
   * True when the failure was the ticket request (`POST /agent/reports/ticket`, ticket mode),
   * which presents the client's own credential: a `401 UNAUTHENTICATED` there means that
   * credential was refused (unlike a `401` for a used or expired ticket on the stream itself).
   */
  ticketFailed?: boolean;
}
/**
 * A snapshot replaced state that was already held: after `CURSOR_EXPIRED` (the cursor fell out of
 * retention, so reports in between were never seen individually) or an unexpected snapshot.
 * Emitted right after that `snapshot` event.
 */
export interface ResyncedStreamEvent {
  type: "resynced";
  report_id: string;
  reason: "cursor_expired" | "snapshot";
}
/**
 * An event this SDK cannot type: an unknown event name or data that does not match its schema
 * (e.g. a report type newer than this SDK's contracts). A report's id still advances the cursor.
 */
export interface UnrecognizedStreamEvent {
  type: "unrecognized";
  event: string;
  id?: string;
  data: unknown;
  issue: string;
}

/** Everything {@link ReportStream} yields, discriminated by `type`. */
export type StreamEvent<P extends ProgressData = ProgressEvent> =
  | SnapshotStreamEvent
  | ReportStreamEvent
  | ProgressStreamEvent<P>
  | ErrorStreamEvent
  | PingStreamEvent
  | OpenStreamEvent
  | ReconnectingStreamEvent
  | ResyncedStreamEvent
  | UnrecognizedStreamEvent;

/** Connection-state notifications among {@link StreamEvent}s. */
export type ConnectionStateEvent = OpenStreamEvent | ReconnectingStreamEvent | ResyncedStreamEvent;

/** Options of {@link ReportStream}. Defaults are stated beside each field. */
export interface StreamOptions {
  /** Resume after this report_id (sent as `Last-Event-ID`); omit to start with a snapshot. */
  cursor?: string;
  /**
   * Authenticate each connection with a one-use ticket from `POST /agent/reports/ticket`
   * (`?ticket=`), instead of sending the credentials as headers. A new ticket is fetched for
   * every connection. Default false.
   */
  ticket?: boolean;
  /**
   * Reconnect when nothing at all (not even a `ping`) arrived for this long, ms. Default
   * 45 000: three times the server's default 15 s heartbeat (`SSE_HEARTBEAT_MS`).
   */
  heartbeatTimeoutMs?: number;
  /** Reconnection delay floor until the server's `retry:` hint arrives, ms. Default 3000 (`SSE_RETRY_MS`). */
  initialRetryMs?: number;
  /** Upper bound of a reconnection delay, ms. Default 30 000. */
  maxRetryMs?: number;
  /**
   * The reconnection policy, replacing the default (the server's `retry:` hint as the floor plus
   * full jitter, see `reconnectDelayMs`; `initialRetryMs` and `maxRetryMs` feed only the
   * default). Gets the consecutive failures (1 = the first reconnect after a connection that
   * delivered events) and the server's current `retry:` hint; returns the delay in ms. A 429's
   * `Retry-After` still wins when longer.
   *
   * @example
   * // 1 s, 2 s, 4 s … at most 10 s, whatever the server's hint:
   * reconnectDelay: (failure) => Math.min(10_000, 1000 * 2 ** (failure - 1))
   */
  reconnectDelay?: (failure: number, hintMs: number) => number;
  /**
   * Received-object mode: each snapshot and report is validated by the contracts' schemas, but
   * the object yielded is the one received (a report as is, no copy; a snapshot with the
   * schema's defaults filled in), so fields the contracts do not name yet are kept; `progress`
   * events are read with `LenientProgressEvent` (no `causality` or `ts` needed). For UIs that
   * read newer optional fields and handle bursts. Default false.
   */
  keepReceived?: boolean;
  /** Consecutive failed connections after which the stream gives up (throws). Default `Infinity`. */
  maxFailures?: number;
  /** Ends the stream when aborted (the iterator finishes without error). */
  signal?: AbortSignal;
  /** Uniform random source in [0, 1) for the reconnection jitter. */
  random?: RandomSource;
}

/** Counters of one {@link ReportStream}. */
export interface StreamStats {
  /** Connections that answered 200. */
  connections: number;
  /** Reports dropped because their report_id was at or below the cursor (re-sent by the server). */
  duplicatesDropped: number;
}

/** Thrown inside the stream when the heartbeat watchdog fires. */
class HeartbeatTimeout extends Error {
  override name = "HeartbeatTimeout";
}

/** How the stream gets a ticket (the client's `ticket()`). */
export type TicketSource = (signal: AbortSignal) => Promise<StreamTicket>;

const STREAM_PATH = "/agent/reports/stream";

/**
 * The report stream: `GET /agent/reports/stream` read with `fetch` and `eventsource-parser`
 * (the WHATWG HTML "Server-sent events" parsing rules), so that it can send headers.
 *
 * What it guarantees, per docs/contract.md "The report stream" (LOCKED rules 1 and 5):
 * - **Resume**: it keeps the cursor (the last snapshot/report id) and after any disconnect,
 *   HTTP error, or heartbeat silence reconnects with `Last-Event-ID: <cursor>`. A frame cut off
 *   mid-way is discarded (an event only counts once its blank line arrived).
 * - **Dedupe**: it never yields a report at or below the last snapshot/report it yielded,
 *   whatever the server re-sends. A `snapshot` is a new baseline and resets that floor.
 * - **CURSOR_EXPIRED**: yields the `error`, expects a fresh `snapshot` (reconnecting without a
 *   cursor if the connection ends first), yields it and then `resynced`.
 * - **Backoff**: reconnection waits at least the server's `retry:` hint plus full jitter growing
 *   with consecutive failures (see `reconnectDelayMs`); a 429's `Retry-After` is honoured.
 * - **CREDENTIAL_EXPIRED**: after that `error` event the server ends the stream; it renews the
 *   credential (bearer `auth.renew`) and reconnects at once, from the cursor, with a fresh
 *   ticket in ticket mode (no backoff: a new credential is the fix).
 * - A 4xx answer that retrying cannot fix (400, 403, 404; 401 unless a token function or a
 *   ticket can present a new credential) ends the stream with that {@link NexusApiError}.
 *
 * Iterate it once: `for await (const ev of stream) …`; leaving the loop closes the connection.
 */
export class ReportStream<P extends ProgressData = ProgressEvent> implements AsyncIterable<StreamEvent<P>> {
  private readonly transport: Transport;
  private readonly getTicket: TicketSource;
  private readonly opts: Required<Omit<StreamOptions, "cursor" | "signal" | "reconnectDelay">> &
    Pick<StreamOptions, "signal" | "reconnectDelay">;
  /** The server ended the stream with `CREDENTIAL_EXPIRED`: renew, then reconnect at once. */
  private credentialExpired = false;
  /** The current connection attempt failed at its ticket request. */
  private ticketFailed = false;
  private readonly ac = new AbortController();
  private floor: string | null;
  private expectSnapshot = false;
  private baseline = false;
  private started = false;
  private hintMs: number;
  private fatal: NexusApiError | undefined;
  /** Counters; see {@link StreamStats}. */
  readonly stats: StreamStats = { connections: 0, duplicatesDropped: 0 };

  constructor(transport: Transport, getTicket: TicketSource, options: StreamOptions = {}) {
    this.transport = transport;
    this.getTicket = getTicket;
    if (options.cursor !== undefined && !isReportId(options.cursor))
      throw new TypeError(`cursor must be a report_id (decimal string), got ${JSON.stringify(options.cursor)}`);
    this.floor = options.cursor ?? null;
    this.opts = {
      ticket: options.ticket ?? false,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 45_000,
      initialRetryMs: options.initialRetryMs ?? SSE_RETRY_MS,
      maxRetryMs: options.maxRetryMs ?? 30_000,
      maxFailures: options.maxFailures ?? Number.POSITIVE_INFINITY,
      random: options.random ?? Math.random,
      signal: options.signal,
      reconnectDelay: options.reconnectDelay,
      keepReceived: options.keepReceived ?? false,
    };
    this.hintMs = this.opts.initialRetryMs;
    if (options.signal) {
      if (options.signal.aborted) this.close();
      else options.signal.addEventListener("abort", () => this.close(), { once: true });
    }
  }

  /** The cursor: report_id of the last snapshot or report yielded (or the starting cursor); `null` before any. */
  get cursor(): string | null {
    return this.floor;
  }

  /** True once {@link close} was called or the signal aborted. */
  get closed(): boolean {
    return this.ac.signal.aborted;
  }

  /** Ends the stream: the open connection is aborted and the iterator finishes. Idempotent. */
  close(): void {
    if (!this.ac.signal.aborted) this.ac.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamEvent<P>> {
    if (this.started) throw new Error("a ReportStream can be iterated once; create another one");
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<StreamEvent<P>, void, undefined> {
    let failures = 0;
    let connection = 0;
    while (!this.closed) {
      const conn = new AbortController();
      const stop = () => conn.abort();
      this.ac.signal.addEventListener("abort", stop, { once: true });
      let delivered = false;
      let reason: ReconnectingStreamEvent["reason"] = "closed";
      let error: unknown;
      let retryAfterMs = 0;
      this.ticketFailed = false;
      let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
      try {
        const cursor = this.expectSnapshot ? null : this.floor;
        const res = await this.watch(conn, () => this.connect(conn.signal, cursor));
        if (res.status !== 200) {
          const text = await res.text().catch(() => "");
          const err = errorFromResponse(res.status, text);
          retryAfterMs = parseRetryAfterMs(res.headers.get("retry-after")) ?? 0;
          if (this.isFatal(res.status, err, this.opts.ticket)) {
            this.fatal = err;
            throw err;
          }
          reason = "http_error";
          error = err;
        } else if (!res.body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
          await res.body?.cancel().catch(() => {});
          reason = "http_error";
          error = new NexusApiError({
            code: "INVALID_RESPONSE",
            message: `the stream answered ${res.headers.get("content-type") ?? "no content type"}, not text/event-stream`,
            recoverable: true,
            status: res.status,
          });
        } else {
          connection++;
          this.stats.connections++;
          yield { type: "open", connection, cursor };
          const pending: EventSourceMessage[] = [];
          const parser = createParser({
            onEvent: (m) => pending.push(m),
            onRetry: (ms) => {
              if (Number.isFinite(ms) && ms >= 0) this.hintMs = ms;
            },
          });
          const decoder = new TextDecoder();
          reader = res.body.getReader();
          const r = reader;
          for (;;) {
            const { done, value } = await this.watch(conn, () => r.read());
            if (done) break;
            parser.feed(decoder.decode(value, { stream: true }));
            while (pending.length > 0) {
              const m = pending.shift() as EventSourceMessage;
              if (!delivered) {
                delivered = true;
                failures = 0;
              }
              yield* this.handle(m);
              if (this.closed) return;
            }
          }
          // The response ended. Per WHATWG an unterminated last event is discarded: a new parser
          // is made per connection, so a half frame can never be completed by the next one.
        }
      } catch (err) {
        if (this.closed) return;
        if (this.fatal) throw this.fatal;
        if (err instanceof HeartbeatTimeout || conn.signal.reason instanceof HeartbeatTimeout) {
          reason = "heartbeat_timeout";
          error = conn.signal.reason;
        } else if (isNexusApiError(err)) {
          reason = "http_error";
          error = err;
        } else {
          reason = "network_error";
          error = err;
        }
      } finally {
        this.ac.signal.removeEventListener("abort", stop);
        conn.abort();
        reader?.cancel().catch(() => {});
      }
      if (this.closed) return;
      failures++;
      if (failures > this.opts.maxFailures)
        throw isNexusApiError(error)
          ? error
          : new NexusApiError({
              code: "NETWORK_ERROR",
              message: `the stream failed ${failures - 1} times in a row (${reason})`,
              recoverable: true,
              status: 0,
              cause: error,
            });
      // After CREDENTIAL_EXPIRED the server ended the stream on purpose, and a new credential
      // (renewed in `connect`) fixes it: reconnect at once, from the cursor.
      const policy = this.opts.reconnectDelay
        ? Math.max(0, this.opts.reconnectDelay(failures, this.hintMs))
        : reconnectDelayMs(failures, this.hintMs, this.opts.maxRetryMs, this.opts.random);
      const delayMs = this.credentialExpired ? 0 : Math.max(policy, retryAfterMs);
      yield {
        type: "reconnecting",
        attempt: failures,
        delayMs,
        reason,
        ...(error === undefined ? {} : { error }),
        ...(this.ticketFailed ? { ticketFailed: true } : {}),
      };
      try {
        await sleep(delayMs, this.ac.signal);
      } catch {
        return;
      }
    }
  }

  /** Opens one connection (fetching a ticket first in ticket mode). */
  private async connect(signal: AbortSignal, cursor: string | null): Promise<Response> {
    const { auth } = this.transport.options;
    if (this.credentialExpired) {
      this.credentialExpired = false;
      if (auth.mode === "bearer" && auth.renew) await auth.renew().catch(() => false);
    }
    const headers: Record<string, string> = { accept: "text/event-stream", "cache-control": "no-cache" };
    let query: Record<string, string> | undefined;
    if (this.opts.ticket) {
      let t: StreamTicket;
      try {
        t = await this.getTicket(signal);
      } catch (err) {
        this.ticketFailed = true;
        // The ticket request uses the client's own credentials: a 401 there is final unless a
        // token function can present a new one (unlike a 401 for a used or expired ticket).
        if (isNexusApiError(err) && this.isFatal(err.status, err, false)) this.fatal = err;
        throw err;
      }
      query = { ticket: t.ticket };
    } else {
      Object.assign(headers, await authHeaders(this.transport.options.auth));
    }
    if (cursor !== null) headers["last-event-id"] = cursor;
    const url = buildUrl(this.transport.options.baseUrl, STREAM_PATH, query);
    return this.transport.options.fetch(url, { method: "GET", headers, signal });
  }

  /**
   * Runs `op` under the heartbeat watchdog: when it takes longer than `heartbeatTimeoutMs`,
   * the connection is aborted with {@link HeartbeatTimeout}. Armed only while waiting for the
   * network, never while the consumer handles an event.
   */
  private async watch<T>(conn: AbortController, op: () => Promise<T>): Promise<T> {
    const timer = setTimeout(
      () => conn.abort(new HeartbeatTimeout(`no data for ${this.opts.heartbeatTimeoutMs} ms`)),
      this.opts.heartbeatTimeoutMs,
    );
    try {
      return await op();
    } finally {
      clearTimeout(timer);
    }
  }

  /** A 4xx that a new attempt cannot fix ends the stream. */
  private isFatal(status: number, err: NexusApiError, ticketAuth: boolean): boolean {
    if (status < 400 || status >= 500) return false;
    if (status === 408 || status === 425 || status === 429 || err.recoverable) return false;
    if (status === 401) return !(ticketAuth || canRefreshCredential(this.transport.options.auth));
    return true;
  }

  /** Turns one SSE message into what the stream yields, applying dedupe and the resync rule. */
  private *handle(m: EventSourceMessage): Generator<StreamEvent<P>> {
    const name = m.event ?? "message";
    let data: unknown;
    try {
      data = JSON.parse(m.data);
    } catch {
      yield { type: "unrecognized", event: name, id: m.id, data: m.data, issue: "data is not JSON" };
      return;
    }
    switch (name) {
      case "snapshot": {
        const p = SnapshotEvent.safeParse(data);
        const id = m.id ?? (p.success ? p.data.report_id : undefined);
        if (!p.success || !isReportId(id)) {
          yield { type: "unrecognized", event: name, id: m.id, data, issue: p.error?.message ?? "no valid id" };
          return;
        }
        const resync = this.baseline;
        const reason = this.expectSnapshot ? "cursor_expired" : "snapshot";
        this.floor = id;
        this.expectSnapshot = false;
        this.baseline = true;
        yield { type: "snapshot", data: this.opts.keepReceived ? withReceivedFields(p.data, data) : p.data };
        if (resync || reason === "cursor_expired") yield { type: "resynced", report_id: id, reason };
        return;
      }
      case "report": {
        const id = m.id ?? (data as { report_id?: unknown } | null)?.report_id;
        if (!isReportId(id)) {
          yield { type: "unrecognized", event: name, id: m.id, data, issue: "report without a valid report_id" };
          return;
        }
        if (this.floor !== null && compareReportIds(id, this.floor) <= 0) {
          this.stats.duplicatesDropped++;
          return;
        }
        this.floor = id;
        const r = parseReportEvent(data, { keepReceived: this.opts.keepReceived });
        if (!r.ok) {
          yield { type: "unrecognized", event: name, id, data, issue: r.issue };
          return;
        }
        this.baseline = true;
        yield { type: "report", data: r.value };
        return;
      }
      case "progress": {
        const p = (this.opts.keepReceived ? LenientProgressEvent : ProgressEvent).safeParse(data);
        if (p.success) yield { type: "progress", data: p.data as P };
        else yield { type: "unrecognized", event: name, data, issue: p.error.message };
        return;
      }
      case "ping": {
        const p = PingEvent.safeParse(data);
        yield { type: "ping", data: p.success ? p.data : { ts: new Date().toISOString() } };
        return;
      }
      case "error": {
        const p = StreamErrorEvent.safeParse(data);
        if (!p.success) {
          yield { type: "unrecognized", event: name, data, issue: p.error.message };
          return;
        }
        if (p.data.error.code === "CURSOR_EXPIRED") this.expectSnapshot = true;
        if (p.data.error.code === "CREDENTIAL_EXPIRED") this.credentialExpired = true;
        yield { type: "error", data: p.data };
        return;
      }
      default:
        yield { type: "unrecognized", event: name, id: m.id, data, issue: `unknown event name ${name}` };
    }
  }
}

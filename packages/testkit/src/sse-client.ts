import type {
  AgentReport,
  ErrorEvent,
  PingEvent,
  ProgressEvent,
  ReportEvent,
  ReportType,
  SnapshotEvent,
} from "@nexus/contracts";
import { createParser, type EventSourceMessage } from "eventsource-parser";

/** One SSE event named `N` whose `data` is `D`; `raw` is the `data:` text as received. */
export interface SseEventOf<N extends string, D> {
  event: N;
  id?: string;
  data: D;
  raw: string;
}

/**
 * One parsed SSE event as a test sees it, discriminated by `event`. `data` is the event's JSON
 * (the text itself when it is not JSON), typed as the contract says the server sends it; it is
 * not validated here, since asserting on it is the tests' job. `http-error` is not an SSE event:
 * the client records a non-2xx response as one event carrying the parsed response body.
 */
export type SseEvent =
  | SseEventOf<"report", ReportEvent>
  | SseEventOf<"snapshot", SnapshotEvent>
  | SseEventOf<"progress", ProgressEvent>
  | SseEventOf<"ping", PingEvent>
  | SseEventOf<"error", ErrorEvent>
  | SseEventOf<"http-error", unknown>;

/** The name of an {@link SseEvent}. */
export type SseEventType = SseEvent["event"];

/** The {@link SseEvent} named `N`. */
export type SseEventNamed<N extends SseEventType> = Extract<SseEvent, { event: N }>;

/** `data` of a `report` event whose report is of type `T`. */
export type ReportEventOf<T extends ReportType> = Omit<ReportEvent, "report"> & {
  report: Extract<AgentReport, { type: T }>;
};

/** Options of {@link openSse}. */
export interface SseOptions {
  headers?: Record<string, string>;
}

/**
 * A minimal SSE client for tests over `fetch` + eventsource-parser (the WHATWG parsing rules):
 * it records every event, the `retry:` value, and lets a test wait for conditions.
 */
export class SseClient {
  readonly events: SseEvent[] = [];
  retry?: number;
  status = 0;
  contentType = "";
  closed = false;
  private readonly ac = new AbortController();
  private waiters: (() => void)[] = [];

  readonly url: string;
  private readonly opts: SseOptions;

  constructor(url: string, opts: SseOptions = {}) {
    this.url = url;
    this.opts = opts;
  }

  /** Connects; resolves when response headers arrived. */
  async open(): Promise<this> {
    const res = await fetch(this.url, {
      headers: { accept: "text/event-stream", ...this.opts.headers },
      signal: this.ac.signal,
    });
    this.status = res.status;
    this.contentType = res.headers.get("content-type") ?? "";
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => "");
      this.events.push({ event: "http-error", data: safeJson(text), raw: text });
      this.closed = true;
      return this;
    }
    const parser = createParser({
      onEvent: (m: EventSourceMessage) => {
        this.events.push({ event: m.event ?? "message", id: m.id, data: safeJson(m.data), raw: m.data } as SseEvent);
        this.notify();
      },
      onRetry: (ms) => {
        this.retry = ms;
      },
    });
    const body = res.body;
    void (async () => {
      const dec = new TextDecoder();
      try {
        for await (const chunk of body as unknown as AsyncIterable<Uint8Array>)
          parser.feed(dec.decode(chunk, { stream: true }));
      } catch {}
      this.closed = true;
      this.notify();
    })();
    return this;
  }

  private notify() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Events of one name. */
  named<N extends SseEventType>(name: N): SseEventNamed<N>[] {
    return this.events.filter((e): e is SseEventNamed<N> => e.event === name);
  }

  /** `report` events' data, in arrival order. */
  reports(): ReportEvent[] {
    return this.named("report").map((e) => e.data);
  }

  /**
   * Waits until `pred(events)` holds.
   * @throws after `timeoutMs` (default 10 s) with the events seen so far.
   */
  async waitFor(pred: (events: SseEvent[]) => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.events)) {
      if (Date.now() > deadline)
        throw new Error(
          `SSE: timed out waiting for ${what}; got ${this.events.length} events: ${this.events
            .map((e) => `${e.event}#${e.id ?? ""}${e.event === "report" ? `:${e.data?.report?.type}` : ""}`)
            .join(", ")}`,
        );
      if (this.closed) {
        const last = this.events.at(-1);
        const errors = this.events.filter((e) => e.event === "error").map((e) => JSON.stringify(e.data));
        throw new Error(
          `SSE: stream closed while waiting for ${what} after ${this.events.length} events (last ${last?.event ?? "none"}#${last?.id ?? ""}${errors.length ? `; error events: ${errors.join(" ")}` : ""})`,
        );
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits for a report of `type` about `commandId` (or ask id) and returns its event data. */
  async waitForReport<T extends ReportType>(
    type: T,
    match: { command_id?: string; ask_id?: string } = {},
    timeoutMs = 10_000,
  ): Promise<ReportEventOf<T>> {
    const find = () =>
      this.reports().find(
        (r): r is ReportEventOf<T> =>
          r.report.type === type &&
          (match.command_id === undefined || r.causality.command_id === match.command_id) &&
          (match.ask_id === undefined || r.causality.ask_id === match.ask_id),
      );
    await this.waitFor(() => find() !== undefined, timeoutMs, `report ${type} ${JSON.stringify(match)}`);
    return find()!;
  }

  close(): void {
    this.ac.abort();
    this.closed = true;
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** Opens an {@link SseClient}. */
export async function openSse(url: string, opts: SseOptions = {}): Promise<SseClient> {
  return new SseClient(url, opts).open();
}

/**
 * The load generator's view of completions: SSE connections read with undici and parsed with
 * `eventsource-parser` (the WHATWG rules). A `report` event whose data has
 * `report.type` = `command.completed` (or `command.failed`) and `causality.command_id` ends that
 * command; every other event is ignored.
 */
import { createParser } from "eventsource-parser";
import { request } from "undici";

/** How a command ended, as its report says. */
export type Outcome = "completed" | "failed";

/** Open SSE connections delivering completions. */
export interface SseFeed {
  /** Receives each completion; set by whoever is measuring now (reports of no one are dropped). */
  onReport: ((commandId: string, outcome: Outcome, atMs: number) => void) | undefined;
  /** `performance.now()` of the newest frame on any connection (ms). */
  lastFrameAtMs: number;
  /** Connections that ended (they are not reopened: a phase with one is suspect). */
  closedConnections: number;
  /** Closes every connection. */
  close(): Promise<void>;
}

interface ReportData {
  report?: { type?: string };
  causality?: { command_id?: string };
}

/**
 * Opens one SSE connection per entry and resolves once every one is live: when its `snapshot`
 * event arrived (`waitForSnapshot`), else when its response headers did.
 * @throws when a connection answers other than 200 or is not live within 15 s.
 */
export async function openSseFeed(
  connections: { url: string; headers: Record<string, string> }[],
  o: { waitForSnapshot: boolean },
): Promise<SseFeed> {
  const ac = new AbortController();
  const feed: SseFeed = {
    onReport: undefined,
    lastFrameAtMs: performance.now(),
    closedConnections: 0,
    async close() {
      ac.abort();
    },
  };
  const open = async (c: { url: string; headers: Record<string, string> }) => {
    const res = await request(c.url, {
      headers: { accept: "text/event-stream", ...c.headers },
      signal: ac.signal,
      bodyTimeout: 0,
      headersTimeout: 15_000,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => "");
      throw new Error(`SSE ${c.url} answered ${res.statusCode}: ${text.slice(0, 300)}`);
    }
    let live!: () => void;
    const isLive = new Promise<void>((r) => {
      live = r;
    });
    if (!o.waitForSnapshot) live();
    const parser = createParser({
      onEvent(m) {
        const at = performance.now();
        feed.lastFrameAtMs = at;
        if (m.event === "snapshot") live();
        if (m.event !== "report") return;
        const data = JSON.parse(m.data) as ReportData;
        const type = data.report?.type;
        const id = data.causality?.command_id;
        if (!id) return;
        if (type === "command.completed") feed.onReport?.(id, "completed", at);
        else if (type === "command.failed") feed.onReport?.(id, "failed", at);
      },
    });
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body) parser.feed(decoder.decode(chunk as Buffer, { stream: true }));
      } catch {}
      if (!ac.signal.aborted) feed.closedConnections++;
    })();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      isLive,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`SSE ${c.url}: no snapshot within 15 s`)), 15_000);
      }),
    ]).finally(() => clearTimeout(timer));
  };
  try {
    await Promise.all(connections.map(open));
  } catch (err) {
    ac.abort();
    throw err;
  }
  return feed;
}

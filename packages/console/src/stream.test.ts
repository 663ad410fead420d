import { describe, expect, it } from "vitest";
import type { StoreAction } from "./store.ts";
import { backoffDelay, type EventSourceLike, StreamClient } from "./stream.ts";

/** A scriptable EventSource stand-in. */
class FakeEventSource implements EventSourceLike {
  readyState = 0;
  onopen: ((ev: Event) => unknown) | null = null;
  closed = false;
  private listeners = new Map<string, ((ev: Event) => void)[]>();
  readonly url: string;
  constructor(url: string) {
    this.url = url;
  }
  addEventListener(type: string, fn: (ev: Event) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  emit(type: string, data: unknown) {
    const ev = new MessageEvent(type, { data: JSON.stringify(data) });
    for (const fn of this.listeners.get(type) ?? []) fn(ev);
  }
  fail(readyState: 0 | 2) {
    this.readyState = readyState;
    for (const fn of this.listeners.get("error") ?? []) fn(new Event("error"));
  }
}

function harness(
  cursor: () => number | null = () => null,
  extra: { ticket?: () => Promise<string | null>; renew?: () => Promise<unknown> } = {},
) {
  const sources: FakeEventSource[] = [];
  const actions: StoreAction[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const client = new StreamClient({
    tenant: { org_id: "acme", project_id: "nexus" },
    getCursor: cursor,
    dispatch: (a) => actions.push(a),
    connect: (url) => {
      const es = new FakeEventSource(url);
      sources.push(es);
      return es;
    },
    setTimer: (fn, ms) => {
      timers.push({ fn, ms });
      return timers.length;
    },
    clearTimer: () => {},
    onProblem: () => {},
    ...extra,
  });
  return { client, sources, actions, timers };
}

describe("StreamClient", () => {
  it("backoff doubles from 1 s up to 10 s", () => {
    expect([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a))).toEqual([1000, 2000, 4000, 8000, 10000, 10000]);
  });

  it("connects with the tenant in the query and no cursor", () => {
    const h = harness();
    h.client.start();
    expect(h.sources[0]?.url).toBe("/agent/reports/stream?org_id=acme&project_id=nexus");
  });

  it("tells a server `error` event apart from a lost connection", () => {
    const h = harness();
    h.client.start();
    const es = h.sources[0]!;
    es.open();
    es.emit("error", { error: { code: "CURSOR_EXPIRED", message: "m", recoverable: true }, ts: "t" });
    expect(h.actions.map((a) => a.kind)).toEqual(["open", "error"]);
    es.fail(0); // the browser retries by itself
    expect(h.actions.at(-1)).toEqual({ kind: "disconnected" });
    expect(h.timers).toHaveLength(0);
  });

  it("when the EventSource is CLOSED, reconnects after a growing backoff with ?cursor=", () => {
    let cursor: number | null = 42;
    const h = harness(() => cursor);
    h.client.start();
    h.sources[0]!.fail(2);
    expect(h.sources[0]!.closed).toBe(true);
    expect(h.timers[0]?.ms).toBe(1000);
    h.timers[0]!.fn();
    expect(h.sources[1]?.url).toContain("cursor=42");
    h.sources[1]!.fail(2);
    expect(h.timers[1]?.ms).toBe(2000);
    cursor = 50;
    h.timers[1]!.fn();
    expect(h.sources[2]?.url).toContain("cursor=50");
    h.sources[2]!.open(); // success resets the backoff
    h.sources[2]!.fail(2);
    expect(h.timers[2]?.ms).toBe(1000);
  });

  it("dispatches nothing after stop, and does not reconnect", () => {
    const h = harness();
    h.client.start();
    const es = h.sources[0]!;
    h.client.stop();
    expect(es.closed).toBe(true);
    es.emit("ping", { ts: "t" });
    es.fail(2);
    expect(h.actions).toEqual([]);
    expect(h.timers).toHaveLength(0);
  });

  describe("ticket mode (signed in)", () => {
    const flush = () => new Promise((r) => setTimeout(r, 0));

    it("opens every connection with a fresh one-use ticket and the cursor, never a token or the tenant", async () => {
      let n = 0;
      let cursor: number | null = null;
      const h = harness(() => cursor, { ticket: async () => `t${++n}` });
      h.client.start();
      await flush();
      expect(h.sources[0]?.url).toBe("/agent/reports/stream?ticket=t1");
      h.sources[0]?.open();
      cursor = 42;
      // A lost connection: the browser would retry with the used ticket; the client closes it and
      // reconnects itself after the backoff, with a new ticket and the cursor.
      h.sources[0]?.fail(0);
      expect(h.sources[0]?.closed).toBe(true);
      expect(h.timers.at(-1)?.ms).toBe(1000);
      h.timers.at(-1)?.fn();
      await flush();
      expect(h.sources[1]?.url).toBe("/agent/reports/stream?ticket=t2&cursor=42");
    });

    it("after CREDENTIAL_EXPIRED: renews first, then reconnects at once from the cursor", async () => {
      const order: string[] = [];
      let n = 0;
      const h = harness(() => 7, {
        ticket: async () => {
          order.push("ticket");
          return `t${++n}`;
        },
        renew: async () => {
          order.push("renew");
          return true;
        },
      });
      h.client.start();
      await flush();
      h.sources[0]?.open();
      h.sources[0]?.emit("error", {
        error: { code: "CREDENTIAL_EXPIRED", message: "expired", recoverable: true },
        ts: "2026-01-01T00:00:00Z",
      });
      expect(h.actions.at(-1)).toMatchObject({ kind: "error", event: { error: { code: "CREDENTIAL_EXPIRED" } } });
      h.sources[0]?.fail(0); // the server ends the stream
      expect(h.timers.at(-1)?.ms).toBe(0);
      h.timers.at(-1)?.fn();
      await flush();
      expect(order).toEqual(["ticket", "renew", "ticket"]);
      expect(h.sources[1]?.url).toBe("/agent/reports/stream?ticket=t2&cursor=7");
    });

    it("no ticket (the request failed): disconnected, and tried again after the backoff", async () => {
      const answers = [null, "t-ok"];
      const h = harness(() => null, { ticket: async () => answers.shift() ?? null });
      h.client.start();
      await flush();
      expect(h.sources).toHaveLength(0);
      expect(h.actions.at(-1)).toEqual({ kind: "disconnected" });
      expect(h.timers.at(-1)?.ms).toBe(1000);
      h.timers.at(-1)?.fn();
      await flush();
      expect(h.sources[0]?.url).toBe("/agent/reports/stream?ticket=t-ok");
    });

    it("a ticket that arrives after stop() opens nothing", async () => {
      let release: (t: string) => void = () => {};
      const h = harness(() => null, { ticket: () => new Promise<string>((r) => (release = r)) });
      h.client.start();
      h.client.stop();
      release("late");
      await flush();
      expect(h.sources).toHaveLength(0);
    });
  });
});

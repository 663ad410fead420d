/**
 * The nats.js patch (patches/README.md), on a real nats-server:
 * - a request that got its reply settles without `RequestOne.cancel()` — whose only effect
 *   there was to build a RequestError (an Error with a stack) to reject the already-settled
 *   promise — and still leaves nothing behind (no pending request in the connection's mux). A
 *   request that gets no reply still times out as before. Without the patch every completed
 *   request calls `cancel()`;
 * - `coalesceWrites` (set by `connectNats`): the publishes of many callbacks of one event-loop
 *   turn leave in one socket write, in order; a stock connection writes once per callback.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { RequestOne } from "@nats-io/nats-core/internal";
import { connect } from "@nats-io/transport-node";
import { STREAMS, subjects } from "@nexus/contracts";
import { natsForTest, type TestNats, uniqueTenant } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, expect, it, vi } from "vitest";
import { connectNats } from "./connect.ts";

let nats: TestNats;
let nc: NatsConnection;

beforeAll(async () => {
  nats = await natsForTest();
  nc = await connectNats({ url: nats.url, name: "nats-patch-test", logger: pino({ level: "silent" }) });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Requests the connection's mux still tracks (nats.js internals: `protocol.muxSubscriptions`). */
function pendingRequests(): number {
  return (nc as unknown as { protocol: { muxSubscriptions: { size(): number } } }).protocol.muxSubscriptions.size();
}

it("completed requests and JetStream publishes settle without cancel() and leave no pending request", async () => {
  const cancel = vi.spyOn(RequestOne.prototype, "cancel");
  const echo = nc.subscribe("nats-patch.echo", {
    callback: (_err, m) => {
      m.respond(m.data);
    },
  });
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => nc.request("nats-patch.echo", `r${i}`)));
  expect(replies.map((m) => m.string())).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`));
  const js = jetstream(nc);
  const t = uniqueTenant("patch");
  const acks = await Promise.all(
    Array.from({ length: 20 }, (_, i) => js.publish(subjects.report(t), JSON.stringify({ i }))),
  );
  expect(acks.every((a) => a.stream === STREAMS.reports)).toBe(true);
  expect(cancel).not.toHaveBeenCalled();
  expect(pendingRequests()).toBe(0);
  echo.unsubscribe();
});

it("a request without a reply still times out and is released", async () => {
  // A subscriber that never answers, so the server does not report "no responders".
  const silent = nc.subscribe("nats-patch.silent", { callback: () => {} });
  await expect(nc.request("nats-patch.silent", "x", { timeout: 200 })).rejects.toThrow(/timeout/i);
  expect(pendingRequests()).toBe(0);
  silent.unsubscribe();
});

/** Counts the socket writes of `conn` (nats.js internals: `protocol.transport.send`). */
function countWrites(conn: NatsConnection): { count: () => number } {
  const transport = (conn as unknown as { protocol: { transport: { send(frame: Uint8Array): void } } }).protocol
    .transport;
  const spy = vi.spyOn(transport, "send");
  return { count: () => spy.mock.calls.length };
}

/** Publishes `n` messages on `subject`, each from its own timer callback of one event-loop turn. */
async function publishFromTimers(conn: NatsConnection, subject: string, n: number): Promise<void> {
  await new Promise<void>((resolve) => {
    for (let i = 0; i < n; i++)
      setTimeout(() => {
        conn.publish(subject, `m${i}`);
        if (i === n - 1) resolve();
      }, 0);
  });
  await conn.flush();
}

it("coalesceWrites: the publishes of one event-loop turn leave in one socket write, in order", async () => {
  const subject = `nats-patch.coalesce.${Date.now()}`;
  const got: string[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_e, m) => {
      got.push(m.string());
    },
  });
  await nc.flush();
  const stock = await connect({ servers: nats.url, noAsyncTraces: true, name: "nats-patch-stock" });
  try {
    const ours = countWrites(nc);
    await publishFromTimers(nc, subject, 20);
    // The 20 publishes and the flush's PING: one write, maybe two when the turn was split.
    expect(ours.count()).toBeLessThanOrEqual(2);
    const theirs = countWrites(stock);
    await publishFromTimers(stock, subject, 20);
    // The stock flush (end of each callback's microtasks): a write per publish.
    expect(theirs.count()).toBeGreaterThanOrEqual(20);
    await nc.flush();
    await vi.waitFor(() => expect(got).toHaveLength(40));
    const expected = Array.from({ length: 20 }, (_, i) => `m${i}`);
    expect(got).toEqual([...expected, ...expected]);
  } finally {
    sub.unsubscribe();
    await stock.close();
  }
});

it("coalesceWrites: a fake setImmediate installed after the connection does not hold its writes", async () => {
  // vitest's fake timers replace setImmediate by default; the patch keeps the real one it
  // found when nats.js loaded. Only setImmediate is faked: setTimeout stays real. The flush
  // first empties the connection's buffer, so no flush scheduled earlier can carry ours.
  await nc.flush();
  vi.useFakeTimers({ toFake: ["setImmediate"] });
  const subject = `nats-patch.fake.${Date.now()}`;
  const got: string[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_e, m) => {
      got.push(m.string());
    },
  });
  try {
    nc.publish(subject, "after the fake");
    // Polled with real timers: vi.waitFor would advance the fake ones and run the flush itself.
    for (let waited = 0; got.length === 0 && waited < 2000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(["after the fake"]);
  } finally {
    vi.useRealTimers();
    sub.unsubscribe();
  }
});

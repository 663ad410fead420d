/**
 * The nats.js patch (patches/README.md), on a real nats-server: a request that got its reply
 * settles without `RequestOne.cancel()` — whose only effect there was to build a RequestError
 * (an Error with a stack) to reject the already-settled promise — and still leaves nothing
 * behind (no pending request in the connection's mux). A request that gets no reply still
 * times out as before. Without the patch every completed request calls `cancel()`.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { RequestOne } from "@nats-io/nats-core/internal";
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

import net from "node:net";
import { createLogger } from "@nexus/runtime";
import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  tenantHeaders,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeStream } from "../src/app.ts";
import { isTooSlow } from "../src/connection.ts";
import { publishMany, publishReport, reportIds, startHarness } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
});

afterAll(async () => {
  await tdb?.drop();
  await nats?.stop();
});

/** A raw HTTP/1.1 client that sends the request and then does not read (paused socket). */
function stalledClient(port: number, headers: Record<string, string>) {
  const socket = net.connect(port, "127.0.0.1");
  socket.pause();
  const lines = Object.entries({ host: `127.0.0.1:${port}`, accept: "text/event-stream", ...headers }).map(
    ([k, v]) => `${k}: ${v}`,
  );
  socket.write(`GET /agent/reports/stream HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`);
  return {
    socket,
    /** Resumes reading and collects everything until the server's end. */
    async drain(): Promise<string> {
      const chunks: Buffer[] = [];
      socket.on("data", (c) => chunks.push(c));
      const ended = new Promise<void>((r) => {
        socket.once("close", () => r());
      });
      socket.resume();
      await ended;
      return Buffer.concat(chunks).toString("utf8");
    },
  };
}

/** The ids of complete (dispatched) events in a raw SSE body. */
function completeIds(body: string): number[] {
  const afterHeaders = body.slice(body.indexOf("\r\n\r\n") + 4);
  const frames = afterHeaders.split("\n\n");
  frames.pop(); // the tail after the last blank line is not a dispatched event
  const ids: number[] = [];
  for (const f of frames) {
    const m = /^id: (\d+)$/m.exec(f);
    if (m && /^event: report$/m.test(f)) ids.push(Number(m[1]));
  }
  return ids;
}

describe("slow clients", () => {
  it("isTooSlow: ends a live connection only above SSE_MAX_BUFFERED_BYTES", () => {
    expect(isTooSlow(0, 1024)).toBe(false);
    expect(isTooSlow(1024, 1024)).toBe(false);
    expect(isTooSlow(1025, 1024)).toBe(true);
  });

  it("slow client is disconnected, other connections are unaffected, and nothing is lost on resume", async () => {
    const h = await startHarness({ nats, db: tdb, env: { SSE_MAX_BUFFERED_BYTES: String(256 * 1024) } });
    try {
      const t = uniqueTenant("slow");
      const fast = await h.open(t);
      const port = (h.app.server.address() as net.AddressInfo).port;
      const slow = stalledClient(port, tenantHeaders(t));
      await waitFor(() => h.app.reportStream.hubListenerCount(t) === 2, 5000, "both attached");
      // Publish 64 KiB reports, each after the reading client has received the previous one,
      // until the stalled connection is ended. The kernel's socket buffers absorb a bounded
      // amount (a few MiB for a socket that is never read); past that the server-side backlog
      // passes 256 KiB. 600 reports (37.5 MiB) is far beyond any buffer here.
      const big = "x".repeat(64 * 1024);
      const ids: number[] = [];
      while (h.app.reportStream.connectionCount() === 2 && ids.length < 600) {
        ids.push(await publishReport(h.pub, t, `big${ids.length}`, { summary: big }));
        await fast.waitFor(() => fast.named("report").length === ids.length, 10_000, "fast client keeps up");
      }
      await waitFor(() => h.app.reportStream.connectionCount() === 1, 10_000, "slow connection ended");
      expect(await h.metric('nexus_sse_disconnects_total{reason="slow"}')).toBe(1);
      const tail = await publishMany(h.pub, t, 3, "tail");
      ids.push(...tail);
      await fast.waitFor(() => fast.named("report").length === ids.length, 20_000, "fast client got all");
      expect(reportIds(fast)).toEqual(ids);
      console.log(`slow client ended after ${ids.length - 3} reports of 64 KiB`);

      const body = await slow.drain();
      const got = completeIds(body);
      expect(got.length).toBeLessThan(ids.length);
      const last = got.at(-1);
      // Resume as EventSource would: Last-Event-ID = the last complete event's id.
      expect(last).toBeDefined();
      const resumed = await h.open(t, { headers: { "last-event-id": String(last) } });
      await resumed.waitFor(() => reportIds(resumed).includes(ids.at(-1) as number), 20_000, "resumed to the end");
      expect(resumed.named("snapshot")).toHaveLength(0);
      expect([...got, ...reportIds(resumed)]).toEqual(ids);
      resumed.close();
      fast.close();
    } finally {
      await h.close();
    }
  });
});

describe("shutdown", () => {
  it("shutdown ends connections: clients keep their last id, hubs and consumers are gone", async () => {
    const h = await startHarness({ nats, db: tdb });
    const a = uniqueTenant("bye");
    const b = uniqueTenant("bye");
    const clients = await Promise.all([h.open(a), h.open(a), h.open(b)]);
    await Promise.all(clients.map((c) => c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot")));
    const aIds = await publishMany(h.pub, a, 3);
    await Promise.all(clients.slice(0, 2).map((c) => c.waitFor(() => c.named("report").length === 3, 5000, "reports")));
    expect(h.app.reportStream.hubCount()).toBe(2);

    const started = Date.now();
    await h.app.close();
    const tookMs = Date.now() - started;
    expect(tookMs).toBeLessThan(3000);
    await Promise.all(clients.map((c) => waitFor(() => c.closed, 5000, "client saw the end")));
    expect(clients[0]?.events.filter((e) => e.id !== undefined).at(-1)?.id).toBe(String(aIds.at(-1)));
    expect(h.app.reportStream.connectionCount()).toBe(0);
    expect(h.app.reportStream.hubCount()).toBe(0);
    // none of the stream service's own (ephemeral) consumers is left; the archiver's durable one is not its
    expect((await h.jsm.consumers.list("NEXUS_REPORTS").next()).filter((ci) => !ci.config.durable_name)).toHaveLength(
      0,
    );
    await expect(fetch(h.streamUrl(a))).rejects.toThrow();
    await h.nc.drain().catch(() => {});
  });

  it("closeStream drains NATS and closes the database within SHUTDOWN_GRACE_MS", async () => {
    const h = await startHarness({ nats, db: tdb });
    let dbClosed = false;
    const db = {
      destroy: async () => {
        dbClosed = true;
      },
    } as unknown as Parameters<typeof closeStream>[0]["db"];
    const t = uniqueTenant("grace");
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
    const started = Date.now();
    await closeStream({
      app: h.app,
      nc: h.nc,
      db,
      graceMs: 2000,
      logger: createLogger({ service: "t", level: "silent" }),
    });
    expect(Date.now() - started).toBeLessThan(2500);
    expect(h.nc.isClosed()).toBe(true);
    await waitFor(() => c.closed, 5000, "client saw the end");
    expect(dbClosed).toBe(true);
  });
});

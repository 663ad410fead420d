import http from "node:http";
import type net from "node:net";
import { describe, expect, it } from "vitest";
import { SseConnection } from "../src/connection.ts";

/** Runs `body` against a real ServerResponse and returns what a client read. */
async function serveOnce(body: (conn: SseConnection) => void): Promise<string> {
  const server = http.createServer((_req, res) => {
    const conn = new SseConnection(res, { heartbeatMs: 60_000, maxBufferedBytes: 1 << 20, drainTimeoutMs: 1000 });
    conn.start();
    body(conn);
    conn.close("shutdown");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const { port } = server.address() as net.AddressInfo;
    return await (await fetch(`http://127.0.0.1:${port}/`)).text();
  } finally {
    server.close();
  }
}

const frame = (seq: number) => ({ seq, frame: `event: report\nid: ${seq}\ndata: {}\n\n` });

describe("SseConnection", () => {
  it("never writes a report at or below the last written id (snapshot included)", async () => {
    const results: boolean[] = [];
    const text = await serveOnce((c) => {
      c.sendSnapshot(10, "event: snapshot\nid: 10\ndata: {}\n\n");
      for (const s of [9, 10, 12, 11, 12, 15]) results.push(c.sendReport(frame(s)));
    });
    expect(results).toEqual([false, false, true, false, false, true]);
    expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))).toEqual([10, 12, 15]);
    expect(text.startsWith("retry: 3000\n\n")).toBe(true);
  });

  it("an error event carries no id", async () => {
    const text = await serveOnce((c) => c.sendError({ code: "CURSOR_EXPIRED", message: "m", recoverable: true }));
    const ev = text.split("\n\n").find((f) => f.startsWith("event: error"));
    expect(ev).toBeDefined();
    expect(ev).not.toMatch(/^id:/m);
  });
});

describe("SseConnection writes of one turn", () => {
  it("leave in one socket write, and a burst in one turn is not taken for a slow client", async () => {
    const writes: number[] = [];
    let reason: string | undefined;
    let sent = 0;
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const server = http.createServer(async (_req, res) => {
      const conn = new SseConnection(res, {
        heartbeatMs: 60_000,
        maxBufferedBytes: 64 * 1024,
        drainTimeoutMs: 1000,
        onClose: (r) => {
          reason = r;
        },
      });
      conn.start();
      conn.live = true;
      await pause(30); // headers and the retry frame are out; the socket is idle
      // Count the system calls that reach the socket from now on.
      const w = res.socket as unknown as {
        _writev: (...a: unknown[]) => unknown;
        _write: (...a: unknown[]) => unknown;
      };
      const writev = w._writev.bind(res.socket);
      const write1 = w._write.bind(res.socket);
      w._writev = (chunks: unknown, cb: unknown) => {
        writes.push((chunks as unknown[]).length);
        return writev(chunks, cb);
      };
      w._write = (chunk: unknown, enc: unknown, cb: unknown) => {
        writes.push(1);
        return write1(chunk, enc, cb);
      };
      // Two reports in one turn to an idle socket (started and completed of one command): one write.
      for (const s of [1, 2]) if (conn.sendReport({ seq: s, frame: `id: ${s}\ndata: {}\n\n` })) sent++;
      await pause(30);
      writes.push(-1); // marks the end of the first turn
      // 40 frames of 4 KiB in one turn: 160 KiB, more than maxBufferedBytes, to a reading client.
      const big = "x".repeat(4096);
      for (let s = 3; s <= 42; s++) if (conn.sendReport({ seq: s, frame: `id: ${s}\ndata: ${big}\n\n` })) sent++;
      await pause(50);
      conn.close("shutdown");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const { port } = server.address() as net.AddressInfo;
      const text = await (await fetch(`http://127.0.0.1:${port}/`)).text();
      expect(writes.slice(0, writes.indexOf(-1))).toHaveLength(1);
      expect(sent).toBe(42);
      expect(reason).toBe("shutdown");
      expect([...text.matchAll(/^id: (\d+)$/gm)]).toHaveLength(42);
    } finally {
      server.close();
    }
  });
});

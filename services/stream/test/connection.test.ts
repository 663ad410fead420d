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

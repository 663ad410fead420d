import { createHmac, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createTestDatabase, type TestDatabase, uniqueTenant, waitFor } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OutboxShareConnector } from "./outbox.ts";
import { shareIdOf } from "./share.ts";
import { createWebhookRelay, verifyWebhook, type WebhookRelaySettings } from "./webhook-relay.ts";

let tdb: TestDatabase;
const h = {
  get db() {
    return tdb.db;
  },
  logger: pino({ level: "silent" }),
};
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb?.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const outboxRows = (_h: unknown, askId: string) =>
  tdb.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();

const SECRET = "test-webhook-secret-0123456789";

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A local receiver on 127.0.0.1 whose answer per request is chosen by `status(n)` (n = 1-based; 0 = never answer). */
async function receiver(
  status: (n: number) => number,
): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      const code = status(received.length);
      if (code === 0) return; // hang: never answer
      res.statusCode = code;
      res.end(res.statusCode < 300 ? "ok" : "nope");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/share`,
    received,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const settings = (url: string, over: Partial<WebhookRelaySettings> = {}): WebhookRelaySettings => ({
  url,
  secret: SECRET,
  maxAttempts: 3,
  timeoutMs: 2000,
  pollMs: 20,
  retryBaseMs: 20,
  retryMaxMs: 40,
  ...over,
});

async function queueShare(): Promise<{ askId: string; shareId: string }> {
  const t = uniqueTenant();
  const askId = randomUUID();
  await new OutboxShareConnector(h.db).share({
    share_id: shareIdOf(askId),
    tenant: t,
    ask_id: askId,
    command_id: randomUUID(),
    recipient: "kim@example.com",
    channel: "email",
    resource: { ref: "doc:quarterly-report", title: "Quarterly report" },
    message: "hello",
  });
  return { askId, shareId: shareIdOf(askId) };
}

describe("webhook relay", () => {
  test("fails once with 500, then delivers once: signature verifies, Idempotency-Key is the share id", async () => {
    const rx = await receiver((n) => (n === 1 ? 500 : 200));
    const { askId, shareId } = await queueShare();
    const relay = createWebhookRelay(settings(rx.url), { db: h.db, logger: h.logger });
    relay.start();
    try {
      await waitFor(async () => (await outboxRows(h, askId))[0]?.status === "delivered", 10_000, "delivered");
      await sleep(200); // no further attempt after delivery
    } finally {
      await relay.stop();
      await rx.close();
    }
    const mine = rx.received.filter((r) => r.headers["idempotency-key"] === shareId);
    expect(mine).toHaveLength(2);
    for (const r of mine) {
      expect(r.headers["content-type"]).toBe("application/json");
      const id = String(r.headers["webhook-id"]);
      const ts = String(r.headers["webhook-timestamp"]);
      expect(id).toBe(shareId);
      expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(30);
      // Recomputed independently of the relay's code, by the Standard Webhooks rule:
      // base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>" keyed with the secret.
      const expected = `v1,${createHmac("sha256", SECRET).update(`${id}.${ts}.${r.body}`).digest("base64")}`;
      expect(r.headers["webhook-signature"]).toBe(expected);
      const headers = { "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": expected };
      expect(verifyWebhook(SECRET, headers, r.body)).toBeDefined();
      expect(verifyWebhook("another-secret-0123456789", headers, r.body)).toBeUndefined();
      expect(verifyWebhook(SECRET, headers, `${r.body} `)).toBeUndefined();
      // The id is signed too: replaying the body under another id fails.
      expect(verifyWebhook(SECRET, { ...headers, "webhook-id": "share-other" }, r.body)).toBeUndefined();
      const body = JSON.parse(r.body);
      expect(body).toMatchObject({
        share_id: shareId,
        ask_id: askId,
        recipient: "kim@example.com",
        channel: "email",
        resource: { ref: "doc:quarterly-report", title: "Quarterly report" },
        message: "hello",
      });
      expect(Object.keys(body).sort()).toEqual(
        [
          "ask_id",
          "channel",
          "command_id",
          "created_at",
          "message",
          "org_id",
          "project_id",
          "recipient",
          "resource",
          "share_id",
        ].sort(),
      );
    }
    const [row] = await outboxRows(h, askId);
    expect(row).toMatchObject({ status: "delivered", attempts: 2 });
    expect(row?.delivered_at).toBeInstanceOf(Date);
  });

  test("a receiver that always fails → status failed after WEBHOOK_MAX_ATTEMPTS with last_error", async () => {
    const rx = await receiver(() => 503);
    const { askId, shareId } = await queueShare();
    const relay = createWebhookRelay(settings(rx.url, { maxAttempts: 3 }), { db: h.db, logger: h.logger });
    relay.start();
    try {
      await waitFor(async () => (await outboxRows(h, askId))[0]?.status === "failed", 10_000, "failed");
      await sleep(200);
    } finally {
      await relay.stop();
      await rx.close();
    }
    expect(rx.received.filter((r) => r.headers["idempotency-key"] === shareId)).toHaveLength(3);
    const [row] = await outboxRows(h, askId);
    expect(row).toMatchObject({ status: "failed", attempts: 3, last_error: "HTTP 503" });
  });

  test("two relays polling concurrently deliver each share exactly once (FOR UPDATE SKIP LOCKED)", async () => {
    const rx = await receiver(() => 200);
    const shares = await Promise.all(Array.from({ length: 12 }, () => queueShare()));
    const a = createWebhookRelay(settings(rx.url, { batchSize: 3 }), { db: h.db, logger: h.logger });
    const b = createWebhookRelay(settings(rx.url, { batchSize: 3 }), { db: h.db, logger: h.logger });
    a.start();
    b.start();
    try {
      await waitFor(
        async () =>
          (await Promise.all(shares.map((s) => outboxRows(h, s.askId)))).every((r) => r[0]?.status === "delivered"),
        10_000,
        "all delivered",
      );
      await sleep(200);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await rx.close();
    }
    for (const s of shares)
      expect(rx.received.filter((r) => r.headers["idempotency-key"] === s.shareId)).toHaveLength(1);
  });

  test("stop() aborts a POST in flight at once and leaves the share queued without counting an attempt", async () => {
    const rx = await receiver(() => 0);
    const { askId, shareId } = await queueShare();
    const relay = createWebhookRelay(settings(rx.url, { timeoutMs: 30_000 }), { db: h.db, logger: h.logger });
    relay.start();
    try {
      await waitFor(() => rx.received.some((r) => r.headers["idempotency-key"] === shareId), 5000, "POST in flight");
      const t0 = Date.now();
      await relay.stop();
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      await rx.close();
    }
    const [row] = await outboxRows(h, askId);
    expect(row).toMatchObject({ status: "queued", attempts: 0 });
  });
});

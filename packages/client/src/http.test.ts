import { afterEach, describe, expect, it } from "vitest";
import { fullJitterMs, parseRetryAfterMs, reconnectDelayMs } from "./backoff.ts";
import { type ClientOptions, createClient } from "./client.ts";
import { isNexusApiError, type NexusApiError } from "./errors.ts";
import type { RetryInfo } from "./http.ts";
import { apiError, json, type LocalServer, localServer, reportData, TENANT } from "./testing/local-server.ts";

const ACCEPTED = { accepted: true, status: "accepted", command_id: "x", correlation_id: "y" };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A client of `server` whose retries wait 0–5 ms (random fixed at its maximum unless told). */
function client(s: LocalServer, o: Partial<ClientOptions> = {}) {
  return createClient({
    baseUrl: s.url,
    auth: { mode: "headers", tenant: TENANT },
    retry: { baseDelayMs: 5, maxDelayMs: 5, random: () => 0.999, ...o.retry },
    ...o,
  });
}

async function caught(p: Promise<unknown>): Promise<NexusApiError> {
  try {
    await p;
  } catch (err) {
    if (isNexusApiError(err)) return err;
    throw err;
  }
  throw new Error("expected a NexusApiError");
}

describe("backoff (AWS full jitter)", () => {
  it("full jitter stays within [0, min(cap, base * 2^(n-1))]", () => {
    expect(fullJitterMs(1, 100, 10_000, () => 0)).toBe(0);
    expect(fullJitterMs(1, 100, 10_000, () => 0.999_999)).toBe(100);
    expect(fullJitterMs(4, 100, 10_000, () => 0.999_999)).toBe(800);
    expect(fullJitterMs(20, 100, 10_000, () => 0.999_999)).toBe(10_000);
    for (let i = 0; i < 1000; i++) {
      const d = fullJitterMs(3, 100, 10_000);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(400);
    }
  });

  it("reconnection waits at least the server's retry: hint, jitter above it, capped", () => {
    expect(reconnectDelayMs(1, 3000, 30_000, () => 0)).toBe(3000);
    expect(reconnectDelayMs(1, 3000, 30_000, () => 0.999_999)).toBe(6000);
    expect(reconnectDelayMs(3, 3000, 30_000, () => 0.999_999)).toBe(24_000);
    expect(reconnectDelayMs(9, 3000, 30_000, () => 0.999_999)).toBe(30_000);
    expect(reconnectDelayMs(1, 60_000, 30_000, () => 0.5)).toBe(30_000);
  });

  it("Retry-After: delay-seconds and HTTP-date (RFC 9110 §10.2.3)", () => {
    expect(parseRetryAfterMs("2")).toBe(2000);
    const now = Date.parse("2026-02-03T09:00:00Z");
    expect(parseRetryAfterMs("Tue, 03 Feb 2026 09:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfterMs("Tue, 03 Feb 2026 08:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfterMs("soon")).toBeUndefined();
    expect(parseRetryAfterMs(null)).toBeUndefined();
  });
});

describe("writing calls: retries (local server)", () => {
  it("504 ACCEPT_UNCONFIRMED then 202: the retry sends the same body (same command_id and correlation id)", async () => {
    server = await localServer((req, res, n) => {
      if (n === 1) return apiError(res, 504, "ACCEPT_UNCONFIRMED", true);
      const b = JSON.parse(req.body);
      json(res, 202, { ...ACCEPTED, command_id: b.command_id, correlation_id: b.client_context.correlation_id });
    });
    const retries: RetryInfo[] = [];
    const c = client(server, { onRetry: (i) => retries.push(i) });
    const r = await c.sendCommand({ type: "doc.summary.create", params: { text: "Hello. World." } });
    expect(server.requests).toHaveLength(2);
    const [a, b] = server.requests;
    expect(b?.body).toBe(a?.body);
    const sent = JSON.parse(a?.body ?? "");
    expect(sent.command_id).toMatch(UUID);
    expect(sent.client_context.correlation_id).toEqual(expect.any(String));
    expect(sent).toMatchObject({ type: "doc.summary.create", params: { text: "Hello. World." } });
    expect(r).toEqual({
      accepted: true,
      status: "accepted",
      command_id: sent.command_id,
      correlation_id: sent.client_context.correlation_id,
    });
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({
      attempt: 1,
      unconfirmed: true,
      error: { code: "ACCEPT_UNCONFIRMED", status: 504 },
    });
  });

  it("503 DEPENDENCY_UNAVAILABLE then 202: retried with the same body", async () => {
    server = await localServer((_req, res, n) =>
      n < 3 ? apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true) : json(res, 202, ACCEPTED),
    );
    await client(server).sendCommand({ type: "doc.summary.create", params: { text: "x" }, command_id: "fixed-1" });
    expect(server.requests).toHaveLength(3);
    expect(new Set(server.requests.map((r) => r.body)).size).toBe(1);
    expect(JSON.parse(server.requests[0]?.body ?? "").command_id).toBe("fixed-1");
  });

  it("429 honours Retry-After before retrying", async () => {
    server = await localServer((_req, res, n) =>
      n === 1 ? apiError(res, 429, "RATE_LIMITED", true, { "retry-after": "1" }) : json(res, 202, ACCEPTED),
    );
    const retries: RetryInfo[] = [];
    const t0 = Date.now();
    await client(server, { onRetry: (i) => retries.push(i) }).sendCommand({ type: "doc.summary.create" });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(retries[0]?.delayMs).toBe(1000);
    expect(retries[0]?.unconfirmed).toBe(false);
  });

  it("a Retry-After beyond maxRetryAfterMs ends the retries at once with RATE_LIMITED", async () => {
    server = await localServer((_req, res) => apiError(res, 429, "RATE_LIMITED", true, { "retry-after": "3600" }));
    const e = await caught(client(server).sendCommand({ type: "doc.summary.create" }));
    expect(e).toMatchObject({ code: "RATE_LIMITED", status: 429, attempts: 1, retryAfterMs: 3_600_000 });
  });

  it("a lost answer (socket reset) then 202: retried with the same body", async () => {
    server = await localServer((_req, res, n) => (n === 1 ? res.socket?.destroy() : json(res, 202, ACCEPTED)));
    await client(server).decide("ask-1", { decision: "approve", note: "ok" });
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]?.body).toBe(server.requests[0]?.body);
    expect(JSON.parse(server.requests[0]?.body ?? "")).toMatchObject({
      decision: "approve",
      note: "ok",
      correlation_id: expect.any(String),
    });
    expect(server.requests[0]?.path).toBe("/approvals/ask-1/decide");
  });

  it("a refused connection certainly stored nothing: NETWORK_ERROR after the retries, not ACCEPT_UNCONFIRMED", async () => {
    const gone = await localServer(() => {});
    await gone.close();
    const e = await caught(client(gone, { retry: { maxAttempts: 2 } }).sendCommand({ type: "doc.summary.create" }));
    expect(e).toMatchObject({ code: "NETWORK_ERROR", status: 0, attempts: 2, recoverable: true });
    expect(e.message).toContain("ECONNREFUSED");
  });

  it("504 on every attempt ends as ACCEPT_UNCONFIRMED after maxAttempts", async () => {
    server = await localServer((_req, res) => apiError(res, 504, "ACCEPT_UNCONFIRMED", true));
    const e = await caught(client(server, { retry: { maxAttempts: 3 } }).decide("a1", { decision: "reject" }));
    expect(e).toMatchObject({ code: "ACCEPT_UNCONFIRMED", recoverable: true, status: 504, attempts: 3 });
    expect(server.requests).toHaveLength(3);
  });

  it("504 then 503 until the attempts are spent is still ACCEPT_UNCONFIRMED (the first may have taken effect)", async () => {
    server = await localServer((_req, res, n) =>
      n === 1 ? apiError(res, 504, "ACCEPT_UNCONFIRMED", true) : apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true),
    );
    const e = await caught(client(server, { retry: { maxAttempts: 3 } }).sendCommand({ type: "doc.summary.create" }));
    expect(e.code).toBe("ACCEPT_UNCONFIRMED");
    expect((e.cause as NexusApiError).code).toBe("DEPENDENCY_UNAVAILABLE");
  });

  it("503 on every attempt is DEPENDENCY_UNAVAILABLE: nothing was stored", async () => {
    server = await localServer((_req, res) => apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true));
    const e = await caught(client(server, { retry: { maxAttempts: 2 } }).sendCommand({ type: "doc.summary.create" }));
    expect(e).toMatchObject({ code: "DEPENDENCY_UNAVAILABLE", status: 503, attempts: 2 });
  });

  it("a 504 then a 409 is the definitive answer: IDEMPOTENCY_CONFLICT, not retried further", async () => {
    server = await localServer((_req, res, n) =>
      n === 1 ? apiError(res, 504, "ACCEPT_UNCONFIRMED", true) : apiError(res, 409, "IDEMPOTENCY_CONFLICT", false),
    );
    const e = await caught(client(server).sendCommand({ type: "doc.summary.create" }));
    expect(e).toMatchObject({ code: "IDEMPOTENCY_CONFLICT", status: 409, attempts: 2 });
    expect(server.requests).toHaveLength(2);
  });

  it("4xx other than 429 is never retried; details and correlation id are kept", async () => {
    server = await localServer((_req, res) =>
      json(res, 400, {
        error: {
          code: "VALIDATION_FAILED",
          message: "params do not fit",
          recoverable: false,
          details: [{ path: "params.text", issue: "Required" }],
          stage: "validate",
        },
        correlation_id: "c-77",
      }),
    );
    const e = await caught(client(server).sendCommand({ type: "doc.summary.create" }));
    expect(server.requests).toHaveLength(1);
    expect(e).toMatchObject({
      name: "NexusApiError",
      code: "VALIDATION_FAILED",
      status: 400,
      recoverable: false,
      correlation_id: "c-77",
      stage: "validate",
      details: [{ path: "params.text", issue: "Required" }],
    });
    expect(isNexusApiError(e, "VALIDATION_FAILED")).toBe(true);
    expect(isNexusApiError(e, "ASK_NOT_FOUND")).toBe(false);
    expect(isNexusApiError(new Error("x"))).toBe(false);
  });

  it("unknown error codes are accepted as they are", async () => {
    server = await localServer((_req, res) => apiError(res, 403, "SELF_APPROVAL_FORBIDDEN", false));
    const e = await caught(client(server).approve("ask-9"));
    expect(e).toMatchObject({ code: "SELF_APPROVAL_FORBIDDEN", status: 403 });
  });

  it("a non-JSON 502 from a proxy counts as unconfirmed and is retried", async () => {
    server = await localServer((_req, res, n) => {
      if (n === 1) {
        res.writeHead(502, { "content-type": "text/html" });
        res.end("<html>bad gateway</html>");
        return;
      }
      json(res, 202, { accepted: true, correlation_id: "c1" });
    });
    const r = await client(server).updateSkin({ theme: "dark" });
    expect(r).toEqual({ accepted: true, correlation_id: "c1" });
  });

  it("settings: the same x-correlation-id on every attempt", async () => {
    server = await localServer((_req, res, n) =>
      n === 1
        ? apiError(res, 504, "ACCEPT_UNCONFIRMED", true)
        : json(res, 202, { accepted: true, correlation_id: "c", first_followup_report_id: "9" }),
    );
    await client(server).updateProfile({ display_name: "Kim" }, { correlationId: "c-settings-1" });
    expect(server.requests.map((r) => [r.method, r.path, r.headers["x-correlation-id"], r.body])).toEqual([
      ["PATCH", "/profile", "c-settings-1", '{"display_name":"Kim"}'],
      ["PATCH", "/profile", "c-settings-1", '{"display_name":"Kim"}'],
    ]);
  });

  it("uploadPhoto sends multipart with the same bytes on a retry", async () => {
    server = await localServer((_req, res, n) =>
      n === 1
        ? apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true)
        : json(res, 202, { accepted: true, correlation_id: "c" }),
    );
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
    await client(server).uploadPhoto(png, "me.png");
    expect(server.requests).toHaveLength(2);
    for (const r of server.requests) {
      expect(r.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
      expect(r.body).toContain('name="photo"; filename="me.png"');
      expect(r.bytes.includes(Buffer.from(png))).toBe(true);
    }
  });

  it("dead-letter requeue is not retried after a lost answer (no idempotency key)", async () => {
    server = await localServer((_req, res) => res.socket?.destroy());
    const e = await caught(client(server).deadLetters.requeue("17"));
    expect(e).toMatchObject({ code: "NETWORK_ERROR", status: 0, attempts: 1 });
    expect(server.requests).toHaveLength(1);
  });

  it("a 2xx body that does not match its schema is INVALID_RESPONSE", async () => {
    server = await localServer((_req, res) => json(res, 202, { accepted: "maybe" }));
    const e = await caught(client(server).sendCommand({ type: "doc.summary.create" }));
    expect(e).toMatchObject({ code: "INVALID_RESPONSE", status: 202 });
  });

  it("aborting the signal ends the retries with the signal's reason", async () => {
    server = await localServer((_req, res) => apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true));
    const ac = new AbortController();
    const c = client(server, { retry: { baseDelayMs: 10_000, maxDelayMs: 10_000 } });
    const p = c.sendCommand({ type: "doc.summary.create" }, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error("user gave up")), 100);
    await expect(p).rejects.toThrow("user gave up");
  });
});

describe("auth headers (local server)", () => {
  it("header mode sends tenant, user and roles", async () => {
    server = await localServer((_req, res) => json(res, 202, ACCEPTED));
    const c = createClient({
      baseUrl: server.url,
      auth: { mode: "headers", tenant: TENANT, userId: "u-1", roles: ["operator", "approver"] },
    });
    await c.sendCommand({ type: "doc.summary.create" });
    expect(server.requests[0]?.headers).toMatchObject({
      "x-org-id": "acme",
      "x-project-id": "nexus",
      "x-user-id": "u-1",
      "x-roles": "operator,approver",
    });
  });

  it("bearer mode calls the token function for every attempt", async () => {
    server = await localServer((_req, res, n) =>
      n === 1 ? apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true) : json(res, 202, ACCEPTED),
    );
    let i = 0;
    const c = createClient({
      baseUrl: server.url,
      auth: { mode: "bearer", token: async () => `tok-${++i}` },
      retry: { baseDelayMs: 1, maxDelayMs: 1 },
    });
    await c.sendCommand({ type: "doc.summary.create" });
    expect(server.requests.map((r) => r.headers.authorization)).toEqual(["Bearer tok-1", "Bearer tok-2"]);
    expect(server.requests[0]?.headers["x-org-id"]).toBeUndefined();
  });

  it("API-key mode sends x-api-key and the tenant headers", async () => {
    server = await localServer((_req, res) => json(res, 202, ACCEPTED));
    const c = createClient({ baseUrl: server.url, auth: { mode: "apiKey", key: "k-secret", tenant: TENANT } });
    await c.sendCommand({ type: "doc.summary.create" });
    expect(server.requests[0]?.headers).toMatchObject({ "x-api-key": "k-secret", "x-org-id": "acme" });
  });
});

describe("endpoints not on the real stack yet (local server)", () => {
  it("history: GET /agent/reports?before=&limit= → typed reports and next_before", async () => {
    server = await localServer((req, res) =>
      json(res, 200, {
        reports: [reportData("12"), reportData("10")],
        next_before: req.query.get("before") === null ? "10" : null,
      }),
    );
    const c = client(server);
    const page = await c.history({ limit: 2 });
    expect(page.reports.map((r) => r.report_id)).toEqual(["12", "10"]);
    expect(page.reports[0]?.report.type).toBe("command.completed");
    expect(page.next_before).toBe("10");
    const next = await c.history({ before: "10", limit: 2 });
    expect(next.next_before).toBeNull();
    expect(server.requests.map((r) => r.url)).toEqual(["/agent/reports?limit=2", "/agent/reports?before=10&limit=2"]);
  });

  it("history: a malformed report makes the page INVALID_RESPONSE", async () => {
    server = await localServer((_req, res) => json(res, 200, { reports: [{ report_id: "1" }], next_before: null }));
    await expect(client(server).history()).rejects.toMatchObject({ code: "INVALID_RESPONSE" });
  });

  it("ticket: POST /agent/reports/ticket → { ticket, expires_at }", async () => {
    server = await localServer((_req, res) => json(res, 200, { ticket: "t-1", expires_at: "2026-02-03T09:01:00Z" }));
    expect(await client(server).ticket()).toEqual({ ticket: "t-1", expires_at: "2026-02-03T09:01:00Z" });
    expect(server.requests[0]).toMatchObject({ method: "POST", path: "/agent/reports/ticket", body: "" });
  });
});

describe("per-call retry options and credential renewal (local server)", () => {
  const CONSOLE_RETRY = { retryOn: "unconfirmed", maxAttempts: 6 } as const;

  it('retryOn "unconfirmed": a 503 (nothing stored) ends the call at once, without onRetry', async () => {
    server = await localServer((_req, res) => apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true));
    const perCall: RetryInfo[] = [];
    const e = await caught(
      client(server).sendCommand({ type: "echo.test" }, { retry: CONSOLE_RETRY, onRetry: (i) => perCall.push(i) }),
    );
    expect(e).toMatchObject({ code: "DEPENDENCY_UNAVAILABLE", status: 503, attempts: 1 });
    expect(server.requests).toHaveLength(1);
    expect(perCall).toEqual([]);
  });

  it('retryOn "unconfirmed": 504, 504, 202 — the same body each time; per-call and client-wide onRetry both told, unconfirmed', async () => {
    server = await localServer((_req, res, n) =>
      n <= 2 ? apiError(res, 504, "ACCEPT_UNCONFIRMED", true) : json(res, 202, { accepted: true, correlation_id: "c" }),
    );
    const perCall: RetryInfo[] = [];
    const wide: RetryInfo[] = [];
    const c = client(server, { onRetry: (i) => wide.push(i) });
    await c.decide("ask-1", { decision: "approve" }, { retry: CONSOLE_RETRY, onRetry: (i) => perCall.push(i) });
    expect(server.requests).toHaveLength(3);
    expect(new Set(server.requests.map((r) => r.body)).size).toBe(1);
    expect(perCall.map((i) => [i.attempt, i.unconfirmed, i.error.code])).toEqual([
      [1, true, "ACCEPT_UNCONFIRMED"],
      [2, true, "ACCEPT_UNCONFIRMED"],
    ]);
    expect(wide).toHaveLength(2);
  });

  it('retryOn "unconfirmed": a lost answer is retried; 504 then 503 ends as ACCEPT_UNCONFIRMED (the first may have taken effect)', async () => {
    server = await localServer((_req, res, n) => (n === 1 ? res.socket?.destroy() : json(res, 202, ACCEPTED)));
    await client(server).sendCommand({ type: "echo.test" }, { retry: CONSOLE_RETRY });
    expect(server.requests).toHaveLength(2);
    await server.close();

    server = await localServer((_req, res, n) =>
      n === 1 ? apiError(res, 504, "ACCEPT_UNCONFIRMED", true) : apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true),
    );
    const e = await caught(client(server).sendCommand({ type: "echo.test" }, { retry: CONSOLE_RETRY }));
    expect(e).toMatchObject({ code: "ACCEPT_UNCONFIRMED", attempts: 2 });
    expect((e.cause as NexusApiError).code).toBe("DEPENDENCY_UNAVAILABLE");
  });

  it("retry: false sends one attempt; per-call fields override the client's; other calls keep the client's policy", async () => {
    server = await localServer((_req, res) => apiError(res, 503, "DEPENDENCY_UNAVAILABLE", true));
    const c = client(server, { retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1 } });
    expect(await caught(c.updateProfile({ display_name: "Kim" }, { retry: false }))).toMatchObject({ attempts: 1 });
    expect(server.requests).toHaveLength(1);
    expect(await caught(c.updateProfile({ display_name: "Kim" }, { retry: { maxAttempts: 2 } }))).toMatchObject({
      attempts: 2,
    });
    expect(await caught(c.updateProfile({ display_name: "Kim" }))).toMatchObject({ attempts: 3 });
    expect(server.requests).toHaveLength(6);
  });

  it("401 CREDENTIAL_EXPIRED: auth.renew() and the same request again at once with the new token (once per call)", async () => {
    server = await localServer((req, res) =>
      req.headers.authorization === "Bearer fresh"
        ? json(res, 202, ACCEPTED)
        : apiError(res, 401, "CREDENTIAL_EXPIRED", true),
    );
    let token = "old";
    let renewals = 0;
    const c = createClient({
      baseUrl: server.url,
      auth: {
        mode: "bearer",
        token: () => token,
        renew: async () => {
          renewals++;
          token = "fresh";
          return true;
        },
      },
    });
    await c.sendCommand({ type: "echo.test" });
    expect(renewals).toBe(1);
    expect(server.requests.map((r) => r.headers.authorization)).toEqual(["Bearer old", "Bearer fresh"]);
    expect(server.requests[1]?.body).toBe(server.requests[0]?.body);

    // A renewal that fails (or a token that expires again) ends the call with the 401.
    token = "old";
    const refused = createClient({
      baseUrl: server.url,
      auth: { mode: "bearer", token: () => "old", renew: async () => true },
    });
    expect(await caught(refused.sendCommand({ type: "echo.test" }))).toMatchObject({
      code: "CREDENTIAL_EXPIRED",
      status: 401,
    });
    expect(server.requests).toHaveLength(4);
    const none = createClient({
      baseUrl: server.url,
      auth: { mode: "bearer", token: "old", renew: async () => false },
    });
    expect(await caught(none.sendCommand({ type: "echo.test" }))).toMatchObject({ code: "CREDENTIAL_EXPIRED" });
    expect(server.requests).toHaveLength(5);
  });
});

/**
 * The security suite, input part: nothing a client sends makes a service answer 5xx, and every
 * refusal carries the standard error body (`{ error: { code, message, recoverable } }`). Run
 * against the four services as production runs them (header mode):
 * - the known 500s: NUL and lone surrogates in text, nesting 4,000 deep, `?x=%ZZ`, long URLs
 *   and header blocks, malformed request lines, wrong content types, oversized bodies;
 * - a seeded random fuzz of ~400 requests mutating valid bodies, headers and tenants;
 * - security headers (CSP with `frame-ancestors 'none'`, `nosniff`, `Referrer-Policy`) on the
 *   console, the API docs, API answers, errors and the profile photo.
 */
import net from "node:net";
import { ErrorBody, type Tenant } from "@nexus/contracts";
import { tenantHeaders, uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "../e2e/fixture.ts";

let e: E2E;
let t: Tenant;

beforeAll(async () => {
  // A high rate limit: this file sends hundreds of requests from one tenant on purpose.
  e = await startE2E({ env: { RATE_LIMIT_PER_MINUTE: "100000", AUTH_FAILURES_PER_MINUTE: "100000" } });
  t = uniqueTenant("input");
});
afterAll(async () => {
  await e?.close();
});

/** A request with a raw string body; returns status, parsed body and headers. */
async function send(
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(`${e.stack.gatewayUrl}${path}`, {
    method,
    headers: { ...tenantHeaders(t), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    body,
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Sends raw bytes on a fresh TCP connection; returns the status line's code and the body. */
function raw(bytes: string): Promise<{ status: number; body: unknown }> {
  const { port } = new URL(e.stack.gatewayUrl);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), "127.0.0.1", () => s.end(bytes));
    let buf = "";
    s.setEncoding("utf8");
    s.on("data", (d) => {
      buf += d;
    });
    s.on("error", reject);
    s.on("close", () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? 0);
      const text = buf.slice(buf.indexOf("\r\n\r\n") + 4);
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {}
      resolve({ status, body });
    });
  });
}

/** Asserts a 4xx with the standard error body; returns `"<status> <code>"`. */
function refusal(what: string, r: { status: number; body: unknown }): string {
  expect(r.status, `${what}: status`).toBeGreaterThanOrEqual(400);
  expect(r.status, `${what}: status`).toBeLessThan(500);
  const parsed = ErrorBody.safeParse(r.body);
  expect(parsed.success, `${what}: standard error body, got ${JSON.stringify(r.body).slice(0, 300)}`).toBe(true);
  return `${r.status} ${parsed.data?.error.code}`;
}

const nest = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;

describe("input that used to reach a 500", () => {
  it("NUL, lone surrogates, deep nesting, bad escapes, long URLs and headers: 4xx with the standard body", async () => {
    const cmd = (params: string) =>
      `{"command_id":"${crypto.randomUUID()}","type":"doc.summary.create","params":${params}}`;
    const cases: [string, () => Promise<{ status: number; body: unknown }>, string][] = [
      ["NUL in a text", () => send("POST", "/sidecar/command", cmd('{"text":"a\\u0000b"}')), "400 VALIDATION_FAILED"],
      ["NUL in a key", () => send("POST", "/sidecar/command", cmd('{"te\\u0000xt":"ab"}')), "400 VALIDATION_FAILED"],
      [
        "lone high surrogate",
        () => send("POST", "/sidecar/command", cmd('{"text":"a\\ud800b"}')),
        "400 VALIDATION_FAILED",
      ],
      [
        "lone low surrogate",
        () => send("POST", "/sidecar/command", cmd('{"text":"\\udfff"}')),
        "400 VALIDATION_FAILED",
      ],
      [
        "context nested 4,000 levels",
        () =>
          send(
            "POST",
            "/sidecar/command",
            `{"command_id":"${crypto.randomUUID()}","type":"echo.test","params":{"text":"x"},"client_context":{"surface":"t","deep":${nest(4000)}}}`,
          ),
        "400 VALIDATION_FAILED",
      ],
      [
        "settings nested 100 levels",
        () => send("PATCH", "/profile", `{"display_name":${nest(100)}}`),
        "400 VALIDATION_FAILED",
      ],
      ["?x=%ZZ on the stream", () => send("GET", "/agent/reports/stream?x=%ZZ"), "400 VALIDATION_FAILED"],
      [
        "%ZZ in an API path",
        () => send("POST", "/approvals/%ZZ/decide", '{"decision":"approve"}'),
        "400 VALIDATION_FAILED",
      ],
      [
        "escaped lone surrogate in the query",
        () => send("GET", "/agent/reports/stream?cursor=%ED%A0%80"),
        "400 VALIDATION_FAILED",
      ],
      ["malformed JSON", () => send("POST", "/sidecar/command", '{"command_id":'), "400 MALFORMED_JSON"],
      ["JSON that is a string", () => send("POST", "/sidecar/command", '"hello"'), "400 VALIDATION_FAILED"],
      ["empty JSON body", () => send("POST", "/sidecar/command", ""), "400 MALFORMED_JSON"],
      [
        "text/plain body",
        () => send("POST", "/sidecar/command", "hello", { "content-type": "text/plain" }),
        "415 UNSUPPORTED_MEDIA_TYPE",
      ],
      // The whole body is sent: the 413 comes before it has arrived, and must still reach the
      // client (the gateway lingers for the rest of the body: lingerForBody in @nexus/http).
      [
        "body over 2 MiB",
        () => send("POST", "/sidecar/command", cmd(`{"text":"${"a".repeat(2 * 1024 * 1024 + 10)}"}`)),
        "413 PAYLOAD_TOO_LARGE",
      ],
      [
        "__proto__ in the body",
        () => send("POST", "/sidecar/command", cmd('{"text":"x","__proto__":{"admin":true}}')),
        "400 MALFORMED_JSON",
      ],
      ["URL of 12 KB", () => send("GET", `/agent/reports/stream?x=${"a".repeat(12_000)}`), "414 URI_TOO_LONG"],
      [
        "URL of 40 KB (past the parser's limit)",
        () => raw(`GET /agent/reports/stream?x=${"a".repeat(40_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
        "414 URI_TOO_LONG",
      ],
      [
        "header block of 40 KB",
        () => raw(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(40_000)}\r\n\r\n`),
        "431 HEADERS_TOO_LARGE",
      ],
      ["malformed request line", () => raw("GARBAGE\r\n\r\n"), "400 VALIDATION_FAILED"],
      [
        "invalid header characters",
        () => raw("GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n"),
        "400 VALIDATION_FAILED",
      ],
      ["unknown route", () => send("GET", "/nope"), "404 NOT_FOUND"],
      ["unknown method", () => send("PUT", "/sidecar/command", "{}"), "404 NOT_FOUND"],
    ];
    for (const [what, run, want] of cases) expect(`${what}: ${refusal(what, await run())}`).toBe(`${what}: ${want}`);
    // Nothing above was accepted: the tenant has no command.
    const s = await e.stream(t);
    const snapshot = s.named("snapshot")[0];
    expect(snapshot, "the stream's first event is a snapshot").toBeDefined();
    expect(snapshot?.data.snapshot.worklog).toEqual([]);
    s.close();
  });
});

/** mulberry32: a small seeded PRNG (Tommy Ettinger), so a failing case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

describe("random fuzz", () => {
  it("~400 mutated requests: never a 5xx, every refusal with the standard body", async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 20261201);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const nasty: unknown[] = [
      "",
      "\u0000",
      "a\ud800",
      "\udc00z",
      "💥".repeat(1000),
      "a".repeat(100_000),
      "<script>alert(1)</script>",
      "'; drop table commands; --",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a log4shell probe, sent as a literal string
      "${jndi:ldap://x}",
      "{{7*7}}",
      "../../etc/passwd",
      "nexus.cmd.>",
      -1,
      0,
      1e308,
      -0,
      2 ** 53 + 1,
      true,
      null,
      [],
      {},
      [[[[[[]]]]]],
      { __proto__: { polluted: true } },
      { constructor: { prototype: { polluted: true } } },
      JSON.parse(nest(40)),
    ];
    const valid: [string, string, () => Record<string, unknown>][] = [
      ["POST", "/sidecar/command", () => command("echo.test", { text: "hi" })],
      ["POST", "/sidecar/command", () => command("draft_email.create", { to: "kim@example.org", brief: "hello" })],
      [
        "POST",
        "/sidecar/command",
        () =>
          command("external_share.prepare", {
            recipient: "a@example.org",
            channel: "email",
            resource: { ref: "doc:1", title: "T" },
          }),
      ],
      ["POST", `/approvals/${crypto.randomUUID()}/decide`, () => ({ decision: "approve", note: "ok" })],
      ["PATCH", "/profile", () => ({ display_name: "Kim", locale: "ko-KR" })],
      ["PATCH", "/assistant/persona", () => ({ name: "Nexus", tone: "friendly" })],
      ["PATCH", "/compliance/settings", () => ({ approvals_required: { "external_share.prepare": 2 } })],
    ];
    /** Replaces, deletes or adds one field somewhere in `v`. */
    const mutate = (v: unknown, depth = 0): unknown => {
      if (v === null || typeof v !== "object" || depth > 3 || rnd() < 0.3) return pick(nasty);
      const o: Record<string, unknown> = Array.isArray(v) ? { ...v } : { ...(v as object) };
      const keys = Object.keys(o);
      const r = rnd();
      if (r < 0.15 && keys.length) delete o[pick(keys)];
      else if (r < 0.3) o[pick(["extra", "__proto__", "constructor", "type", "x\u0000"])] = pick(nasty);
      else if (keys.length) {
        const k = pick(keys);
        o[k] = mutate(o[k], depth + 1);
      }
      return Array.isArray(v) ? Object.values(o) : o;
    };
    const tenants: Record<string, string>[] = [
      tenantHeaders(t),
      tenantHeaders(t),
      tenantHeaders(t),
      { "x-org-id": "acme.*", "x-project-id": "p" },
      { "x-org-id": ">", "x-project-id": "p" },
      { "x-org-id": "a".repeat(65), "x-project-id": "p" },
      { "x-org-id": "ok" },
      {},
      { "x-org-id": "ok", "x-project-id": "p", "x-roles": "root" },
      { "x-org-id": "ok", "x-project-id": "p", "x-user-id": "a\tb" },
    ];
    const tally = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const [method, path, body] = pick(valid);
      const mutated = mutate(body());
      const h = {
        ...pick(tenants),
        "content-type": pick([
          "application/json",
          "application/json",
          "application/json; charset=utf-8",
          "text/plain",
          "application/x-www-form-urlencoded",
        ]),
      };
      const payload = rnd() < 0.05 ? JSON.stringify(mutated).slice(0, -1) : JSON.stringify(mutated);
      const res = await fetch(`${e.stack.gatewayUrl}${path}`, { method, headers: h, body: payload });
      const text = await res.text();
      const what = `#${i} (seed ${seed}) ${method} ${path} ${JSON.stringify(h)} ${payload.slice(0, 200)}`;
      expect(res.status, `${what} → ${res.status} ${text.slice(0, 300)}`).toBeLessThan(500);
      if (res.status >= 400) {
        const parsed = ErrorBody.safeParse(JSON.parse(text));
        expect(parsed.success, `${what}: standard error body, got ${text.slice(0, 300)}`).toBe(true);
      }
      tally.set(String(res.status), (tally.get(String(res.status)) ?? 0) + 1);
    }
    // The fuzz reached both sides: some requests were accepted and many refused.
    expect([...tally.keys()].some((s) => s.startsWith("2"))).toBe(true);
    expect(tally.get("400") ?? 0).toBeGreaterThan(50);
    console.log(`fuzz seed ${seed}: ${JSON.stringify(Object.fromEntries([...tally].sort()))}`);
    // The services are still up and well.
    for (const url of [e.stack.gatewayUrl, e.stack.streamUrl]) expect((await fetch(`${url}/ready`)).status).toBe(200);
  });
});

describe("security headers", () => {
  const expectHeaders = (what: string, h: Headers) => {
    expect(h.get("x-content-type-options"), what).toBe("nosniff");
    expect(h.get("content-security-policy") ?? "", what).toMatch(/frame-ancestors 'none'/);
    expect(h.get("referrer-policy"), what).toBe("no-referrer");
    expect(h.get("x-frame-options"), what).toBe("DENY");
  };

  it("on the console, the API docs, API answers, errors and the profile photo", async () => {
    const png = Buffer.from(
      "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082",
      "hex",
    );
    const form = new FormData();
    form.append("file", new Blob([png], { type: "image/png" }), "a.png");
    const up = await fetch(`${e.stack.gatewayUrl}/profile/photo`, {
      method: "POST",
      headers: tenantHeaders(t),
      body: form,
    });
    expect(up.status).toBe(202);
    const targets: [string, Promise<Response>][] = [
      ["console", fetch(`${e.stack.gatewayUrl}/ui/`)],
      ["API docs", fetch(`${e.stack.gatewayUrl}/docs/`)],
      [
        "202",
        fetch(`${e.stack.gatewayUrl}/sidecar/command`, {
          method: "POST",
          headers: { ...tenantHeaders(t), "content-type": "application/json" },
          body: JSON.stringify(command("echo.test", { text: "h" })),
        }),
      ],
      ["400", fetch(`${e.stack.gatewayUrl}/sidecar/command`, { method: "POST", headers: tenantHeaders(t) })],
      ["404", fetch(`${e.stack.gatewayUrl}/nope`)],
      // Refused by the URL guard, before authentication and routing hooks.
      ["400 malformed escape", fetch(`${e.stack.gatewayUrl}/health?x=%ZZ`)],
      ["photo", fetch(`${e.stack.gatewayUrl}/profile/photo?org_id=${t.org_id}&project_id=${t.project_id}`)],
      ["stream service", fetch(`${e.stack.streamUrl}/health`)],
      // Streamed answers: the handler takes the raw response over (the hooks' headers are copied).
      [
        "audit export",
        fetch(`${e.stack.gatewayUrl}/agent/audit/export?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z`, {
          headers: tenantHeaders(t),
        }),
      ],
    ];
    for (const [what, p] of targets) {
      const r = await p;
      await r.arrayBuffer();
      expect(r.status, what).toBeLessThan(500);
      if (what.startsWith("400")) expect(r.status, what).toBe(400);
      expectHeaders(what, r.headers);
    }
    // The report stream (SSE, never ends on its own): the headers, then hang up.
    for (const [what, origin] of [
      ["SSE, stream service", e.stack.streamUrl],
      ["SSE through the gateway", e.stack.gatewayUrl],
    ] as const) {
      const ac = new AbortController();
      const r = await fetch(`${origin}/agent/reports/stream`, { headers: tenantHeaders(t), signal: ac.signal });
      expect(r.status, what).toBe(200);
      expect(r.headers.get("content-type"), what).toBe("text/event-stream");
      expectHeaders(what, r.headers);
      ac.abort();
    }
    // The console's own policy: scripts and styles from itself only.
    const ui = await fetch(`${e.stack.gatewayUrl}/ui/`);
    await ui.text();
    expect(ui.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
  });
});

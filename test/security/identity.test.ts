/**
 * The security suite, identity part: the four services running as production runs them, in JWT
 * mode with an issuer and an audience, attacked from outside over HTTP.
 * - JWT attacks on the command route and on the report stream (through the gateway's proxy);
 * - the role matrix on the real routes;
 * - separation of duties: the requester of a RED command cannot approve it, N distinct
 *   approvers when the tenant's compliance settings say so, every decision names its principal;
 * - tenant fuzz in token claims, headers and query;
 * - one-use stream tickets, CREDENTIAL_EXPIRED on an open stream, credentials never in logs.
 */
import fs from "node:fs";
import path from "node:path";
import type { StreamTicket } from "@nexus/client";
import type { ErrorBody, Tenant } from "@nexus/contracts";
import { openSse, type ReportEventOf, type SseClient, uniqueTenant, waitFor } from "@nexus/testkit";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "../e2e/fixture.ts";

const SECRET = "security-suite-hs256-secret-0123456789";
const ISSUER = "https://idp.example.test/";
const AUDIENCE = "nexus-api";
const API_KEY = "sec-suite-static-key-0123456789";
const KEY_TENANT: Tenant = { org_id: "keyorg", project_id: "keyproj" };

let e: E2E;
const now = () => Math.floor(Date.now() / 1000);

interface TokenOptions {
  /** Seconds since the epoch; `null` leaves the claim out. */
  exp?: number | null;
  iss?: string | null;
  aud?: string | null;
  secret?: string;
  nbf?: number;
}

/** An HS256 token for `claims`, valid for the stack unless the options say otherwise. */
async function jwt(claims: Record<string, unknown>, o: TokenOptions = {}): Promise<string> {
  let b = new SignJWT(claims).setProtectedHeader({ alg: "HS256" });
  const exp = o.exp === undefined ? now() + 600 : o.exp;
  if (exp !== null) b = b.setExpirationTime(exp);
  const iss = o.iss === undefined ? ISSUER : o.iss;
  if (iss !== null) b = b.setIssuer(iss);
  const aud = o.aud === undefined ? AUDIENCE : o.aud;
  if (aud !== null) b = b.setAudience(aud);
  if (o.nbf !== undefined) b = b.setNotBefore(o.nbf);
  return b.sign(new TextEncoder().encode(o.secret ?? SECRET));
}

/** A token of `principal` with `roles` for tenant `t`. */
const tokenOf = (t: Tenant, principal: string, roles: string[], o: TokenOptions = {}) =>
  jwt({ ...t, sub: principal, roles }, o);

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** `"<status> <error code>"` of a request, or just the status when the body has no error. */
async function outcome(method: string, url: string, headers: Record<string, string>, body?: unknown): Promise<string> {
  const r = await e.call<Partial<ErrorBody> | null>(method, url, null, body, headers);
  return `${r.status}${r.body?.error?.code ? ` ${r.body.error.code}` : ""}`;
}

/** Opens the report stream through the gateway; `query` carries token, ticket or api_key. */
async function stream(query: Record<string, string>, headers: Record<string, string> = {}): Promise<SseClient> {
  const c = await openSse(`${e.stack.gatewayUrl}/agent/reports/stream?${new URLSearchParams(query)}`, { headers });
  opened.push(c);
  return c;
}
const opened: SseClient[] = [];

/** A live stream of `t` through the gateway, past its snapshot. */
async function watcher(t: Tenant): Promise<SseClient> {
  const w = await stream({ token: await tokenOf(t, "watcher", ["viewer"]) });
  await w.waitFor((ev) => ev.some((x) => x.event === "snapshot"), 10_000, "snapshot");
  return w;
}

beforeAll(async () => {
  e = await startE2E({
    env: {
      AUTH_MODE: "jwt",
      JWT_SECRET: SECRET,
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
      JWT_MAX_TTL_SECONDS: "3600",
      // The clock tolerance is what lets a just-expired token through; a small one keeps the
      // CREDENTIAL_EXPIRED test short.
      JWT_CLOCK_TOLERANCE_SECONDS: "1",
      // This file sends many bad tokens on purpose; the per-address limit has its own test.
      AUTH_FAILURES_PER_MINUTE: "100000",
      API_KEYS: `${API_KEY}:${KEY_TENANT.org_id}:${KEY_TENANT.project_id}:svc-reader:viewer`,
    },
  });
});
afterAll(async () => {
  for (const c of opened) c.close();
  await e?.close();
});

describe("JWT attacks on the running gateway and stream", () => {
  it("every forged, stale or misdirected token is refused with the standard body; a good one works", async () => {
    const t = uniqueTenant("jwt");
    const claims = { ...t, sub: "alice", roles: ["operator"] };
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(
      JSON.stringify({ ...claims, exp: now() + 60, iss: ISSUER, aud: AUDIENCE }),
    ).toString("base64url")}.`;
    const good = await jwt(claims);
    const [h, , sig] = good.split(".");
    const escalated = `${h}.${Buffer.from(JSON.stringify({ ...claims, roles: ["admin"], exp: now() + 60, iss: ISSUER, aud: AUDIENCE })).toString("base64url")}.${sig}`;
    const cases: [string, Record<string, string>, string][] = [
      ["no credential", {}, "401 UNAUTHENTICATED"],
      [
        "tenant headers only (header mode is off)",
        { "x-org-id": t.org_id, "x-project-id": t.project_id },
        "401 UNAUTHENTICATED",
      ],
      ['alg "none"', bearer(unsigned), "401 UNAUTHENTICATED"],
      ["payload changed after signing (roles → admin)", bearer(escalated), "401 UNAUTHENTICATED"],
      ["signed with another secret", bearer(await jwt(claims, { secret: "x".repeat(40) })), "401 UNAUTHENTICATED"],
      ["no exp", bearer(await jwt(claims, { exp: null })), "401 UNAUTHENTICATED"],
      ["exp 100 years ahead", bearer(await jwt(claims, { exp: now() + 100 * 365 * 86_400 })), "401 UNAUTHENTICATED"],
      ["expired", bearer(await jwt(claims, { exp: now() - 60 })), "401 CREDENTIAL_EXPIRED"],
      ["not yet valid (nbf)", bearer(await jwt(claims, { nbf: now() + 300 })), "401 UNAUTHENTICATED"],
      ["no iss", bearer(await jwt(claims, { iss: null })), "401 UNAUTHENTICATED"],
      ["another issuer", bearer(await jwt(claims, { iss: "https://evil.example/" })), "401 UNAUTHENTICATED"],
      ["no aud", bearer(await jwt(claims, { aud: null })), "401 UNAUTHENTICATED"],
      ["another audience", bearer(await jwt(claims, { aud: "other-api" })), "401 UNAUTHENTICATED"],
      ["garbage", bearer("not.a.jwt"), "401 UNAUTHENTICATED"],
      ["empty bearer", { authorization: "Bearer " }, "401 UNAUTHENTICATED"],
      ["a JWT presented as an API key", { "x-api-key": good }, "401 UNAUTHENTICATED"],
      [
        "tenant headers naming another tenant",
        { ...bearer(good), "x-org-id": "other", "x-project-id": t.project_id },
        "403 TENANT_MISMATCH",
      ],
      ["the good token", bearer(good), "202"],
    ];
    for (const [what, headers, want] of cases) {
      const got = await outcome("POST", "/sidecar/command", headers, command("echo.test", { text: "hi" }));
      expect(`${what}: ${got}`).toBe(`${what}: ${want}`);
    }
    // The standard error body, with the stage that refused it.
    const refused = await e.call<ErrorBody>(
      "POST",
      "/sidecar/command",
      null,
      command("echo.test", { text: "x" }),
      bearer(unsigned),
    );
    expect(refused.body.error).toMatchObject({ code: "UNAUTHENTICATED", recoverable: false, stage: "auth" });
    expect(typeof refused.body.error.message).toBe("string");

    // The report stream, authenticated by the stream service behind the gateway's proxy.
    const viewer = await tokenOf(t, "alice", ["viewer"]);
    for (const [what, token, want] of [
      ["forged", escalated, 401],
      ["other audience", await tokenOf(t, "alice", ["viewer"], { aud: "other-api" }), 401],
      ["expired", await tokenOf(t, "alice", ["viewer"], { exp: now() - 60 }), 401],
      ["good", viewer, 200],
    ] as const) {
      const c = await stream({ token });
      expect(`${what}: ${c.status}`).toBe(`${what}: ${want}`);
      if (want !== 200)
        expect((c.events[0]?.data as ErrorBody | undefined)?.error.code).toMatch(
          /^(UNAUTHENTICATED|CREDENTIAL_EXPIRED)$/,
        );
      c.close();
    }
  });
});

describe("roles on the real routes", () => {
  it("viewer reads; operator sends; approver decides; admin administers; no role does nothing", async () => {
    const t = uniqueTenant("roles");
    const missingAsk = "00000000-0000-4000-8000-000000000000";
    const probe = async (roles: string[]) => {
      const h = bearer(await tokenOf(t, `p-${roles.join("-") || "none"}`, roles));
      const s = await stream({ token: await tokenOf(t, "p", roles) });
      s.close();
      return {
        stream: String(s.status),
        ticket: await outcome("POST", "/agent/reports/ticket", h),
        command: await outcome("POST", "/sidecar/command", h, command("echo.test", { text: "r" })),
        decide: await outcome("POST", `/approvals/${missingAsk}/decide`, h, { decision: "approve" }),
        compliance: await outcome("PATCH", "/compliance/settings", h, { approvals_required: {} }),
        profile: await outcome("PATCH", "/profile", h, { display_name: "Kim" }),
        apiKeys: await outcome("GET", "/admin/api-keys", h),
      };
    };
    const F = "403 FORBIDDEN";
    const matrix: [string[], Record<string, string>][] = [
      [[], { stream: "403", ticket: F, command: F, decide: F, compliance: F, profile: F, apiKeys: F }],
      [["viewer"], { stream: "200", ticket: "200", command: F, decide: F, compliance: F, profile: F, apiKeys: F }],
      [
        ["operator"],
        { stream: "200", ticket: "200", command: "202", decide: F, compliance: F, profile: F, apiKeys: F },
      ],
      [
        ["approver"],
        {
          stream: "200",
          ticket: "200",
          command: F,
          decide: "404 ASK_NOT_FOUND",
          compliance: F,
          profile: F,
          apiKeys: F,
        },
      ],
      [
        ["admin"],
        {
          stream: "200",
          ticket: "200",
          command: "202",
          decide: "404 ASK_NOT_FOUND",
          compliance: "202",
          profile: "202",
          apiKeys: "200",
        },
      ],
      [["superuser"], { stream: "403", ticket: F, command: F, decide: F, compliance: F, profile: F, apiKeys: F }],
    ];
    for (const [roles, want] of matrix) expect({ roles, ...(await probe(roles)) }).toEqual({ roles, ...want });
  });
});

describe("separation of duties", () => {
  const SHARE = { recipient: "partner@example.org", channel: "email", resource: { ref: "doc:7", title: "Plan" } };

  /** Sends a RED share as `requester`; `watch` (opened before) sees its ask. */
  async function openAsk(t: Tenant, requester: string, watch: SseClient): Promise<string> {
    const c = command("external_share.prepare", SHARE);
    const h = bearer(await tokenOf(t, requester, ["operator", "approver"]));
    expect((await e.call("POST", "/sidecar/command", null, c, h)).status).toBe(202);
    const created = await watch.waitForReport("ask.created", { command_id: c.command_id }, 15_000);
    expect(created.report.ask.requested_by).toBe(requester);
    return created.causality.ask_id!;
  }
  const decide = async (t: Tenant, askId: string, who: string, decision = "approve") =>
    e.call("POST", `/approvals/${askId}/decide`, null, { decision }, bearer(await tokenOf(t, who, ["approver"])));

  it("the requester of a RED command cannot approve it; another approver can, and is named", async () => {
    const t = uniqueTenant("sod");
    const watch = await watcher(t);
    const askId = await openAsk(t, "alice", watch);
    const self = await decide(t, askId, "alice");
    expect(self.status).toBe(403);
    expect((self.body as ErrorBody).error).toMatchObject({ code: "SELF_APPROVAL_FORBIDDEN", recoverable: false });
    // The refusal changed nothing: the ask is still open for another approver.
    const bob = await decide(t, askId, "bob");
    expect(bob.status).toBe(202);
    const decided = await watch.waitForReport("ask.decided", { ask_id: askId }, 15_000);
    expect(decided.report.ask).toMatchObject({ decision: "approve", decided_by: "bob" });
    await watch.waitForReport("ask.executed", { ask_id: askId }, 15_000);
    // A fresh snapshot names the requester and the approver.
    const snap = await watcher(t);
    const ask = JSON.stringify(snap.named("snapshot")[0]?.data);
    expect(ask).toContain('"requested_by":"alice"');
    expect(ask).toContain('"bob"');
  });

  it("N distinct approvers when compliance says so: one approver twice is still one", async () => {
    const t = uniqueTenant("nofm");
    const admin = bearer(await tokenOf(t, "root", ["admin"]));
    const watch = await watcher(t);
    expect(
      (
        await e.call(
          "PATCH",
          "/compliance/settings",
          null,
          { approvals_required: { "external_share.prepare": 2 } },
          admin,
        )
      ).status,
    ).toBe(202);
    // The compliance change applies to asks raised after it is stored.
    await watch.waitForReport("settings.updated", {}, 15_000);
    const askId = await openAsk(t, "alice", watch);
    expect((await decide(t, askId, "alice")).status).toBe(403);
    expect((await decide(t, askId, "bob")).status).toBe(202);
    expect((await decide(t, askId, "bob")).status).toBe(202); // idempotent, not a second approval
    await new Promise((r) => setTimeout(r, 1000));
    expect(watch.reports().some((x) => x.report.type === "ask.executed" && x.causality.ask_id === askId)).toBe(false);
    expect((await decide(t, askId, "carol")).status).toBe(202);
    await watch.waitForReport("ask.executed", { ask_id: askId }, 15_000);
    const decisions = watch
      .reports()
      .filter((x): x is ReportEventOf<"ask.decided"> => x.report.type === "ask.decided" && x.causality.ask_id === askId)
      .map((x) => `${x.report.ask.decided_by} ${x.report.ask.approvals!.have}/${x.report.ask.approvals!.need}`);
    expect(decisions).toEqual(["bob 1/2", "carol 2/2"]);
    watch.close();
  });
});

describe("tenant fuzz", () => {
  it("no crafted tenant id in a token, header or query reaches NATS or another tenant", async () => {
    const t = uniqueTenant("fuzz");
    const bad: unknown[] = [
      "",
      " ",
      "acme.nexus",
      "acme.*",
      ">",
      "*",
      "a b",
      "a\tb",
      "../etc",
      "a/b",
      "ünïcode",
      "a".repeat(65),
      "a\u0000b",
      "$JS",
      42,
      null,
      ["acme"],
      { org: "acme" },
    ];
    for (const org of bad) {
      const claims = { org_id: org, project_id: t.project_id, sub: "mallory", roles: ["admin"] };
      const got = await outcome(
        "POST",
        "/sidecar/command",
        bearer(await jwt(claims)),
        command("echo.test", { text: "x" }),
      );
      expect(`${JSON.stringify(org)}: ${got}`).toBe(`${JSON.stringify(org)}: 401 UNAUTHENTICATED`);
    }
    // A good token with a crafted tenant in the headers or the stream query: mismatch or invalid,
    // never the header's tenant.
    const good = await tokenOf(t, "mallory", ["admin"]);
    for (const org of ["acme.*", ">", "other", t.org_id.toUpperCase()]) {
      const got = await outcome(
        "POST",
        "/sidecar/command",
        { ...bearer(good), "x-org-id": org, "x-project-id": t.project_id },
        command("echo.test", { text: "x" }),
      );
      expect(`${org}: ${got}`).toMatch(
        new RegExp(`^${org.replace(/[.*>]/g, "\\$&")}: (403 TENANT_MISMATCH|400 INVALID_TENANT)$`),
      );
      const s = await stream({ token: good, org_id: org, project_id: t.project_id });
      expect(`${org}: ${s.status}`).toMatch(new RegExp(`^${org.replace(/[.*>]/g, "\\$&")}: (403|400)$`));
    }
    // Another tenant's ask is not found, whoever asks.
    const victim = uniqueTenant("victim");
    const watch = await watcher(victim);
    const share = command("external_share.prepare", {
      recipient: "x@example.org",
      channel: "email",
      resource: { ref: "doc:1", title: "T" },
    });
    expect(
      (await e.call("POST", "/sidecar/command", null, share, bearer(await tokenOf(victim, "v", ["operator"])))).status,
    ).toBe(202);
    const created = await watch.waitForReport("ask.created", { command_id: share.command_id }, 15_000);
    watch.close();
    const attacker = bearer(await tokenOf(t, "mallory", ["admin"]));
    expect(
      await outcome("POST", `/approvals/${created.causality.ask_id}/decide`, attacker, { decision: "approve" }),
    ).toBe("404 ASK_NOT_FOUND");
  });
});

describe("stream credentials", () => {
  it("a ticket opens one stream once, for its own tenant only, and carries no secret in the URL", async () => {
    const t = uniqueTenant("ticket");
    const viewer = bearer(await tokenOf(t, "alice", ["viewer"]));
    const issue = async () =>
      (await e.call<StreamTicket>("POST", "/agent/reports/ticket", null, undefined, viewer)).body;
    const first = await issue();
    expect(first.ticket).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(Date.parse(first.expires_at) - Date.now()).toBeLessThanOrEqual(60_000);
    const s = await stream({ ticket: first.ticket });
    expect(s.status).toBe(200);
    await s.waitFor((ev) => ev.some((x) => x.event === "snapshot"), 10_000, "snapshot");
    expect(s.named("snapshot")[0]?.data).toBeTruthy();
    s.close();
    const again = await stream({ ticket: first.ticket });
    expect(again.status).toBe(401);
    expect((again.events[0]?.data as ErrorBody | undefined)?.error.code).toBe("UNAUTHENTICATED");
    const other = await issue();
    const crossed = await stream({ ticket: other.ticket, org_id: "someone-else", project_id: t.project_id });
    expect(crossed.status).toBe(403);
  });

  it("an open stream ends with a recoverable CREDENTIAL_EXPIRED when its token expires", async () => {
    const t = uniqueTenant("exp");
    // 6 s: enough for the stream to open on a loaded machine before the token expires.
    const s = await stream({ token: await tokenOf(t, "alice", ["viewer"], { exp: now() + 6 }) });
    expect(s.status).toBe(200);
    await s.waitFor((ev) => ev.some((x) => x.event === "error"), 15_000, "CREDENTIAL_EXPIRED");
    expect(s.named("error")[0]?.data.error).toMatchObject({ code: "CREDENTIAL_EXPIRED", recoverable: true });
    await waitFor(() => s.closed, 5000, "the stream to end");
  });

  it("?token= and ?api_key= never reach a log line of the gateway or the stream service", async () => {
    const t = uniqueTenant("logs");
    const token = await tokenOf(t, "alice", ["viewer"]);
    const a = await stream({ token });
    const b = await stream({ api_key: API_KEY, org_id: KEY_TENANT.org_id, project_id: KEY_TENANT.project_id });
    expect([a.status, b.status]).toEqual([200, 200]);
    a.close();
    b.close();
    const bad = await stream({ token: `${token}x` }); // refused requests are logged too
    expect(bad.status).toBe(401);
    const logs = () =>
      ["gateway", "stream"].map((s) => fs.readFileSync(path.join(e.stack.logDir, `${s}.log`), "utf8")).join("\n");
    // The access log lines of these requests are written when they end (and logs are buffered
    // for up to 100 ms).
    await waitFor(
      () => {
        const all = logs();
        return (all.match(/token=\[redacted\]/g) ?? []).length >= 2 && all.includes("api_key=[redacted]");
      },
      10_000,
      "the access log lines",
    );
    const all = logs();
    expect(all).toContain("api_key=[redacted]");
    expect(all).not.toContain(token.split(".")[2]);
    expect(all).not.toContain(API_KEY);
  });
});

/**
 * The console's sign-in in JWT mode, in headless Chromium against the real stack (the five
 * services on their own NATS server and database) and a local OpenID Connect provider that
 * speaks the real wire format (test/browser/oidc-provider.ts: discovery, /authorize with a
 * sign-in form, /token with PKCE verification and refresh-token rotation, an RS256 JWKS).
 *
 * The gateway runs with AUTH_MODE=jwt, JWT_JWKS_URL at the provider, issuer and audience
 * enforced, and CONSOLE_OIDC_* naming the provider. Covered: the sign-in screen (axe in light,
 * dark, English, Korean), sign-in through the provider's form, commands and decisions as the
 * signed-in users, the stream on one-use tickets (no token in any request URL), role-aware
 * controls (a viewer sees no Approve and no composer), token expiry → refresh and resume with no
 * report missing or twice, a reload (prompt=none), the sign-out, and older entries from the
 * archive's history endpoint on demand.
 */
import path from "node:path";
import { createClient, type Following } from "@nexus/client";
import type { Tenant } from "@nexus/contracts";
import { uniqueTenant } from "@nexus/testkit";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "../e2e/fixture.ts";
import { axeSerious, CAN_RUN, DOCS, launch, RECORD_CONN_STATES, submitComposer, type W } from "./mock.ts";
import { type OidcProvider, startOidcProvider } from "./oidc-provider.ts";

const UI_WAIT_MS = 20_000;
const CLIENT_ID = "nexus-console";
const AUDIENCE = "nexus-api";
const T: Tenant = uniqueTenant("sso");
/** A tenant of its own for the history test (its worklog is counted). */
const H: Tenant = uniqueTenant("ssohist");

const USERS = {
  alice: { ...T, roles: ["operator"], name: "Alice Operator" },
  bob: { ...T, roles: ["approver"], name: "Bob Approver" },
  vera: { ...T, roles: ["viewer"], name: "Vera Viewer" },
  ada: { ...T, roles: ["admin"], name: "Ada Admin" },
  hana: { ...H, roles: ["admin"], name: "하나" },
};
type User = keyof typeof USERS;

interface Seen {
  url: string;
  method: string;
  authorization?: string;
  /** The `Last-Event-ID` a stream request resumed from. */
  lastEventId?: string;
}

describe.skipIf(!CAN_RUN)("console sign-in (OIDC, JWT mode) in Chromium against the stack", () => {
  let provider: OidcProvider;
  let e: E2E;
  let browser: Browser;
  let gw = "";
  const contexts: BrowserContext[] = [];
  /** Every request any page made (the provider's included), for the no-token-in-URL check. */
  const seen: Seen[] = [];
  const followers: Following[] = [];

  beforeAll(async () => {
    const redirectUris: string[] = [];
    const corsOrigins: string[] = [];
    provider = await startOidcProvider({
      clientId: CLIENT_ID,
      redirectUris,
      corsOrigins,
      audience: AUDIENCE,
      users: USERS,
    });
    [e, browser] = await Promise.all([
      startE2E({
        env: {
          AUTH_MODE: "jwt",
          JWT_JWKS_URL: provider.jwksUrl,
          JWT_ISSUER: provider.issuer,
          JWT_AUDIENCE: AUDIENCE,
          JWT_CLOCK_TOLERANCE_SECONDS: "0",
          AUTH_FAILURES_PER_MINUTE: "100000",
          CONSOLE_OIDC_ISSUER: provider.issuer,
          CONSOLE_OIDC_CLIENT_ID: CLIENT_ID,
          CONSOLE_OIDC_SCOPES: "openid profile offline_access",
          // A short snapshot worklog, so that older entries live only in the archive.
          STREAM_WORKLOG_KEEP: "5",
        },
      }),
      launch(),
    ]);
    gw = e.stack.gatewayUrl;
    redirectUris.push(`${gw}/ui/`);
    corsOrigins.push(new URL(gw).origin);
  });

  afterAll(async () => {
    for (const f of followers) f.close();
    await browser?.close().catch(() => {});
    await e?.close();
    await provider?.close();
  });

  afterEach(async () => {
    for (const c of contexts.splice(0)) await c.close().catch(() => {});
  });

  /** A fresh browser context on the console's sign-in screen. */
  async function openSignIn(
    o: { locale?: string; colorScheme?: "light" | "dark"; viewport?: { width: number; height: number } } = {},
  ) {
    const context = await browser.newContext({
      viewport: o.viewport ?? { width: 1280, height: 900 },
      locale: o.locale ?? "en-GB",
      colorScheme: o.colorScheme ?? "light",
      timezoneId: "Europe/Berlin",
    });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(UI_WAIT_MS);
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    page.on("request", (r) => {
      const { authorization, "last-event-id": lastEventId } = r.headers();
      seen.push({
        url: r.url(),
        method: r.method(),
        ...(authorization ? { authorization } : {}),
        ...(lastEventId ? { lastEventId } : {}),
      });
    });
    await page.addInitScript(RECORD_CONN_STATES);
    const res = await page.goto(`${gw}/ui/`);
    expect(res?.status()).toBe(200);
    await page.locator('[data-testid="signin"][data-status="signed-out"]').waitFor();
    return { page, context, errors };
  }

  /** Signs `user` in through the provider's form; resolves when the console is live. */
  async function signIn(user: User, o: Parameters<typeof openSignIn>[0] = {}) {
    const opened = await openSignIn(o);
    const { page } = opened;
    await page.getByTestId("sign-in").click();
    await page.waitForURL((u) => u.href.startsWith(provider.issuer));
    await page.locator("#username").fill(user);
    await page.locator("#idp-submit").click();
    await page.locator('[data-testid="conn-state"][data-state="live"]').waitFor();
    await page.waitForFunction(() => (window as W).__nexus?.state != null);
    // The code and state never stay in the address bar.
    expect(new URL(page.url()).searchParams.has("code")).toBe(false);
    return opened;
  }

  async function askOf(page: Page, commandId: string): Promise<string> {
    const handle = await page.waitForFunction(
      (cid) => (window as W).__nexus?.state?.asks.find((a) => a.action.command_id === cid)?.ask_id ?? null,
      commandId,
    );
    return (await handle.jsonValue()) as string;
  }

  /** No issued token (access, refresh or ID) in any request URL; no credential parameter but `ticket`. */
  function expectNoTokenInUrls() {
    expect(provider.issued.length).toBeGreaterThan(0);
    for (const r of seen) {
      for (const token of provider.issued) expect(r.url.includes(token), `${r.method} ${r.url}`).toBe(false);
      const q = new URL(r.url).searchParams;
      for (const p of ["token", "access_token", "api_key", "id_token", "refresh_token"])
        expect(q.has(p), `${p} in ${r.url}`).toBe(false);
    }
  }

  /** The SDK following tenant `t` as `user` with a long-lived token: the reference for what the stream carried. */
  async function reference(user: User): Promise<Following> {
    const token = await provider.accessTokenFor(user, 900);
    const f = createClient({ baseUrl: gw, auth: { mode: "bearer", token } }).follow();
    followers.push(f);
    await f.ready({ timeoutMs: 10_000 });
    return f;
  }

  it("the sign-in screen: axe clean in light and dark, English and Korean; the CSP lets the page reach the provider only", async () => {
    const cases = [
      { locale: "en-GB", colorScheme: "light" as const, shot: "console-signin.png" },
      { locale: "en-GB", colorScheme: "dark" as const },
      { locale: "ko-KR", colorScheme: "light" as const, shot: "console-signin-ko.png" },
      { locale: "ko-KR", colorScheme: "dark" as const },
    ];
    for (const c of cases) {
      const { page, errors } = await openSignIn(c);
      const lang = c.locale.slice(0, 2);
      await expect.poll(() => page.evaluate(() => document.documentElement.lang)).toBe(lang);
      const title = (await page.locator("#signin-h").textContent()) ?? "";
      expect(title).toBe(lang === "ko" ? "NEXUS 콘솔에 로그인" : "Sign in to NEXUS Console");
      expect(await page.getByTestId("sign-in").textContent()).toContain(new URL(provider.issuer).host);
      expect(await axeSerious(page), `${c.locale} ${c.colorScheme}`).toEqual([]);
      if (c.shot) await page.screenshot({ path: path.join(DOCS, c.shot) });
      expect(errors).toEqual([]);
    }
    const connectSrc = async (url: string) =>
      ((await fetch(url)).headers.get("content-security-policy") ?? "")
        .split(";")
        .find((d) => d.startsWith("connect-src"));
    expect(await connectSrc(`${gw}/ui/`)).toBe(`connect-src 'self' ${new URL(provider.issuer).origin}`);
    expect(await connectSrc(`${gw}/ui/config.json`)).toBe(`connect-src 'self' ${new URL(provider.issuer).origin}`);
    expect(await connectSrc(`${gw}/health`)).toBe("connect-src 'self'");
  });

  it("signs in through the provider; commands and decisions as that user; a viewer sees no Approve; the stream on tickets", async () => {
    const alice = await signIn("alice");
    const ap = alice.page;
    expect(await ap.getByTestId("account-principal").textContent()).toBe("Alice Operator");
    expect(await ap.getByTestId("account-roles").getAttribute("data-roles")).toBe("operator");
    expect(await ap.getByTestId("tenant-current").textContent()).toBe(`${T.org_id}/${T.project_id}`);
    expect(await ap.getByTestId("tenant-summary").count()).toBe(0); // the token names the tenant: no switcher
    expect(await ap.getByTestId("nav-settings").count()).toBe(0); // settings only for admins
    expect(await ap.evaluate(() => (window as W).__nexus?.tenant)).toEqual(T);

    const share = await submitComposer(ap, "external_share.prepare", {
      recipient: "partner@example.org",
      resource_ref: "drive:file/7",
      resource_title: "Board deck",
      channel: "email",
      message: "For Thursday.",
    });
    const askId = await askOf(ap, share);
    await ap.locator(`[data-testid="asks-open"] [data-testid="ask-${askId}"]`).waitFor();
    await expect.poll(() => ap.getByTestId(`ask-requester-${askId}`).textContent()).toContain("alice");
    expect(await ap.getByTestId(`approve-${askId}`).count()).toBe(0); // an operator cannot approve

    const vera = await signIn("vera");
    const vp = vera.page;
    expect(await vp.getByTestId("account-roles").getAttribute("data-roles")).toBe("viewer");
    await vp.locator(`[data-testid="asks-open"] [data-testid="ask-${askId}"]`).waitFor();
    expect(await vp.getByTestId(`approve-${askId}`).count()).toBe(0);
    expect(await vp.getByTestId(`reject-${askId}`).count()).toBe(0);
    await vp.getByTestId("composer-forbidden").waitFor();
    expect(await vp.getByTestId("submit-command").count()).toBe(0);

    const bob = await signIn("bob");
    const bp = bob.page;
    await bp.getByTestId(`approve-${askId}`).waitFor({ state: "visible" });
    const [decide] = await Promise.all([
      bp.waitForResponse((r) => new URL(r.url()).pathname === `/approvals/${askId}/decide`),
      bp.getByTestId(`approve-${askId}`).click(),
    ]);
    expect(decide.status()).toBe(202);
    expect(decide.request().headers().authorization).toMatch(/^Bearer ey/);
    await expect.poll(() => bp.getByTestId(`ask-decider-${askId}`).textContent()).toContain("bob");
    // Every page saw the decision on its stream, the requester's included.
    for (const p of [ap, vp, bp])
      await p.locator(`[data-testid="work-${share}"][data-status="done"]`).waitFor({ timeout: UI_WAIT_MS });

    // The stream: a ticket per connection, never the tenant or a token in its URL.
    const streams = seen.filter((r) => new URL(r.url).pathname === "/agent/reports/stream");
    expect(streams.length).toBeGreaterThanOrEqual(3);
    for (const s of streams) {
      const q = new URL(s.url).searchParams;
      expect([...q.keys()].filter((k) => k !== "cursor")).toEqual(["ticket"]);
    }
    const tickets = seen.filter((r) => new URL(r.url).pathname === "/agent/reports/ticket");
    expect(tickets.length).toBeGreaterThanOrEqual(3);
    for (const tk of tickets) expect(tk.authorization).toMatch(/^Bearer ey/);
    expectNoTokenInUrls();
    expect(await axeSerious(ap)).toEqual([]);
    await ap.screenshot({ path: path.join(DOCS, "console-signed-in.png") });
    for (const x of [alice, vera, bob]) expect(x.errors).toEqual([]);
  });

  it("a token that expires: refreshed, the stream resumes from its cursor with no report missing or twice", async () => {
    const ref = await reference("ada");
    provider.setAccessTtl(8);
    const { page, errors } = await signIn("ada");
    provider.setAccessTtl(600); // the refreshed token lives long: one expiry in this test
    const first = seen.filter((r) => r.authorization).at(-1)?.authorization;
    const from = (await page.evaluate(() => (window as W).__nexus?.lastId)) as number;
    const before = provider.grants.refresh_token ?? 0;

    // Reports keep coming across the expiry (sent by the test as ada, with a long-lived token).
    const token = await provider.accessTokenFor("ada", 900);
    const sent: string[] = [];
    const until = Date.now() + 12_000;
    while (Date.now() < until) {
      const body = command("echo.test", { text: `tick ${sent.length}` });
      const r = await e.call("POST", "/sidecar/command", null, body, { authorization: `Bearer ${token}` });
      expect(r.status).toBe(202);
      sent.push(body.command_id);
      await new Promise((res) => setTimeout(res, 400));
    }
    await expect.poll(() => provider.grants.refresh_token ?? 0, { timeout: UI_WAIT_MS }).toBeGreaterThan(before);
    await page.locator('[data-testid="conn-state"][data-state="live"]').waitFor();
    for (const id of sent)
      await ref.waitForReport((r) => r.causality.command_id === id && r.report.type === "command.completed", {
        timeoutMs: UI_WAIT_MS,
      });

    // What the console applied is exactly what the stream carried after its snapshot.
    const expected = ref
      .events()
      .flatMap((ev) => (ev.type === "report" ? [ev.data.report_id] : []))
      .filter((id) => Number(id) > from);
    await expect
      .poll(
        async () => {
          const applied = (await page.evaluate(() => (window as W).__nexus?.applied)) as string[];
          return expected.every((id) => applied.includes(id));
        },
        { timeout: UI_WAIT_MS },
      )
      .toBe(true);
    const applied = (await page.evaluate(() => (window as W).__nexus?.applied)) as string[];
    expect(new Set(applied).size).toBe(applied.length);
    expect(applied.filter((id) => Number(id) > from).sort()).toEqual([...expected].sort());
    // It reconnected (live → reconnecting → live), never from a fresh snapshot.
    const history = (await page.evaluate(() => (window as W).__connHistory)) as string[];
    expect(history).toContain("reconnecting");
    expect(history).not.toContain("resynced");
    expect(history.at(-1)).toBe("live");
    // Resumed by Last-Event-ID (the SDK reads the stream with fetch), with a ticket and no token.
    const streams = seen.filter(
      (r) => new URL(r.url).pathname === "/agent/reports/stream" && Number(r.lastEventId) >= from,
    );
    expect(streams.length).toBeGreaterThanOrEqual(1);
    for (const r of streams) expect([...new URL(r.url).searchParams.keys()]).toEqual(["ticket"]);

    // A command from the page after the expiry goes out with the refreshed token.
    const id = await submitComposer(page, "doc.summary.create", {
      text: "Renewed. The token was refreshed.",
      max_sentences: "1",
    });
    const post = seen.filter((r) => r.method === "POST" && new URL(r.url).pathname === "/sidecar/command").at(-1);
    expect(post?.authorization).toMatch(/^Bearer ey/);
    expect(post?.authorization).not.toBe(first);
    await page.locator(`[data-testid="work-${id}"][data-status="done"]`).waitFor();
    expectNoTokenInUrls();
    expect(errors).toEqual([]);
  });

  it("a reload signs in again without a screen (prompt=none); the sign-out ends the session", async () => {
    const { page, errors } = await signIn("ada");
    const authorizes = () => provider.requests.filter((r) => r.url.startsWith("/idp/authorize"));
    const n = authorizes().length;
    await page.reload();
    await page.locator('[data-testid="conn-state"][data-state="live"]').waitFor();
    expect(await page.getByTestId("account-principal").textContent()).toBe("Ada Admin");
    const again = authorizes().slice(n);
    expect(again).toHaveLength(1);
    expect(new URLSearchParams(again[0]?.url.split("?")[1]).get("prompt")).toBe("none");
    await page.getByTestId("nav-settings").waitFor(); // admin

    await page.getByTestId("sign-out").click();
    await page.locator('[data-testid="signin"][data-status="signed-out"]').waitFor();
    expect(provider.requests.some((r) => r.url.startsWith("/idp/logout"))).toBe(true);
    // Signed out for good: a reload shows the sign-in screen and asks the provider nothing.
    const m = provider.requests.length;
    await page.reload();
    await page.locator('[data-testid="signin"][data-status="signed-out"]').waitFor();
    expect(provider.requests.slice(m).filter((r) => r.url.startsWith("/idp/authorize"))).toEqual([]);
    // The provider's session ended too: signing in shows its form again.
    await page.getByTestId("sign-in").click();
    await page.locator("#username").waitFor();
    expect(errors).toEqual([]);
  });

  it("loads older entries on demand from the archive's history endpoint", async () => {
    const token = await provider.accessTokenFor("hana", 900);
    const auth = { authorization: `Bearer ${token}` };
    const ref = await reference("hana");
    const ids: string[] = [];
    for (let i = 0; i < 14; i++) {
      const body = command("echo.test", { text: `old ${i}` });
      expect((await e.call("POST", "/sidecar/command", null, body, auth)).status).toBe(202);
      ids.push(body.command_id);
    }
    for (const id of ids)
      await ref.waitForReport((r) => r.causality.command_id === id && r.report.type === "command.completed", {
        timeoutMs: UI_WAIT_MS,
      });
    // Archived (the archiver runs a little behind the stream).
    await expect
      .poll(
        async () =>
          (await e.call<{ reports?: unknown[] }>("GET", "/agent/reports?limit=200", null, undefined, auth)).body.reports
            ?.length ?? 0,
        {
          timeout: UI_WAIT_MS,
        },
      )
      .toBeGreaterThanOrEqual(ref.events().filter((ev) => ev.type === "report").length);

    const { page, errors } = await signIn("hana", { locale: "ko-KR" });
    const shown = () => page.evaluate(() => (window as W).__nexus?.state?.worklog.map((w) => w.command_id) ?? []);
    expect(await shown()).toHaveLength(5); // STREAM_WORKLOG_KEEP
    const more = page.getByTestId("load-older");
    for (let i = 0; i < 10 && (await page.getByTestId("older-done").count()) === 0; i++) {
      await page.getByTestId("worklog-scroll").evaluate((el) => {
        el.scrollTop = el.scrollHeight;
      });
      if (await more.isVisible()) await more.click();
      await page.waitForTimeout(300);
    }
    await page.getByTestId("older-done").waitFor({ state: "attached" });
    const all = await shown();
    expect(new Set(all).size).toBe(all.length);
    expect([...all].sort()).toEqual([...ids].sort());
    // Virtualised: the rows in the DOM stay few.
    expect(await page.locator('[data-testid="worklog"] > li').count()).toBeLessThan(40);
    const history = seen.filter((r) => new URL(r.url).pathname === "/agent/reports");
    expect(history.length).toBeGreaterThanOrEqual(1);
    for (const h of history) {
      expect(h.authorization).toMatch(/^Bearer ey/);
      expect(new URL(h.url).searchParams.get("before")).toMatch(/^\d+$/);
    }
    expectNoTokenInUrls();
    expect(errors).toEqual([]);
  });
});

/**
 * The console (packages/console, served by the gateway at /ui/) driven in headless Chromium
 * against the real stack: four service processes on their own NATS server and database.
 *
 * Needs the built console (`pnpm --filter @nexus/console build`) and Debian's /usr/bin/chromium
 * (playwright-core only, no downloaded browsers). Skipped when Chromium is missing.
 * Screenshots go to test-artifacts/ (gitignored).
 */
import fs from "node:fs";
import path from "node:path";
import type { Tenant } from "@nexus/contracts";
import { REPO_ROOT, uniqueTenant } from "@nexus/testkit";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "../e2e/fixture.ts";
import { axeSerious, RECORD_CONN_STATES, submitComposer, type W } from "./mock.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.join(REPO_ROOT, "test-artifacts");
const CONSOLE_BUILT = fs.existsSync(path.join(REPO_ROOT, "packages/console/dist/index.html"));

/** How long the UI may take to show what the stream reported (the stack runs real processes). */
const UI_WAIT_MS = 20_000;

describe.skipIf(!fs.existsSync(CHROMIUM))("console in Chromium against the stack", () => {
  let e: E2E;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    if (!CONSOLE_BUILT)
      throw new Error("packages/console/dist is missing: run `pnpm --filter @nexus/console build` first");
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    [e, browser] = await Promise.all([
      startE2E(),
      chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-quic",
          "--no-first-run",
          "--disable-component-update",
          "--disable-sync",
        ],
      }),
    ]);
  });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await e?.close();
  });

  afterEach(async () => {
    for (const c of contexts.splice(0)) await c.close().catch(() => {});
  });

  /** A page of its own (fresh context) showing `tenant`, live with its first snapshot. */
  async function openConsole(
    tenant: Tenant,
    viewport = { width: 1280, height: 900 },
  ): Promise<{ page: Page; errors: string[]; snapshotId: number }> {
    const context = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Europe/Berlin" });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(UI_WAIT_MS);
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.addInitScript(RECORD_CONN_STATES);
    const q = new URLSearchParams({ org_id: tenant.org_id, project_id: tenant.project_id });
    const res = await page.goto(`${e.stack.gatewayUrl}/ui/?${q}`);
    expect(res?.status()).toBe(200);
    await page.locator('[data-testid="conn-state"][data-state="live"]').waitFor();
    await page.waitForFunction(() => (window as W).__nexus?.state != null && (window as W).__nexus?.lastId != null);
    const shown = await page.evaluate(() => (window as W).__nexus?.tenant);
    expect(shown).toEqual(tenant);
    expect(await page.getByTestId("tenant-current").textContent()).toBe(`${tenant.org_id}/${tenant.project_id}`);
    const snapshotId = (await page.evaluate(() => (window as W).__nexus?.lastId)) as number;
    return { page, errors, snapshotId };
  }

  /** {@link submitComposer}, then waits until the composer says the command was sent. */
  async function submitCommand(page: Page, type: string, fill: Record<string, string>): Promise<string> {
    const id = await submitComposer(page, type, fill);
    await expect
      .poll(() => page.locator(`[data-testid="composer-status"][data-command-id="${id}"]`).textContent(), {
        timeout: UI_WAIT_MS,
      })
      .toMatch(/^Sent/);
    return id;
  }

  /** Waits until the worklog entry of `commandId` has `status`; returns the entry's locator. */
  async function workEntry(page: Page, commandId: string, status: string) {
    const entry = page.locator(`[data-testid="work-${commandId}"][data-status="${status}"]`);
    await entry.waitFor({ timeout: UI_WAIT_MS });
    return entry;
  }

  /** The ask the stream created for the share `commandId` (read from the page's state). */
  async function askOf(page: Page, commandId: string): Promise<string> {
    const handle = await page.waitForFunction(
      (cid) => (window as W).__nexus?.state?.asks.find((a) => a.action.command_id === cid)?.ask_id ?? null,
      commandId,
      { timeout: UI_WAIT_MS },
    );
    return (await handle.jsonValue()) as string;
  }

  it("submits each command type from the UI and shows its result", async () => {
    const t = uniqueTenant("ui");
    const { page, errors } = await openConsole(t);
    await expect.poll(() => page.getByTestId("worklog").locator("> li").count()).toBe(0);

    // draft_email.create → subject and body
    const draft = await submitCommand(page, "draft_email.create", {
      to: "kim@example.com",
      subject: "Vendor offer",
      brief: "Politely decline the offer from the vendor",
      tone: "formal",
    });
    await workEntry(page, draft, "done");
    const email = page.getByTestId(`work-result-${draft}`);
    await expect.poll(() => email.locator("strong").first().textContent()).toMatch(/\S{3,}/);
    expect(await email.textContent()).toMatch(/Subject:/);
    expect(((await email.locator("pre").textContent()) ?? "").length).toBeGreaterThan(20);
    expect(await email.locator("pre").textContent()).toMatch(/Kim/);
    expect(await page.getByTestId(`work-status-${draft}`).textContent()).toBe("Done");
    // focus moved from the form to the new entry
    await expect
      .poll(() => page.evaluate(() => document.activeElement?.getAttribute("data-testid")))
      .toBe(`work-${draft}`);

    // prep_pack.create → summary and checklist
    const prep = await submitCommand(page, "prep_pack.create", {
      meeting_title: "Q3 planning",
      attendees: "Kim\nLee",
      agenda: "Budget\nHiring",
      docs: "Q2 report",
    });
    await workEntry(page, prep, "done");
    const pack = page.getByTestId(`work-result-${prep}`);
    expect(await pack.textContent()).toMatch(/Q3 planning/);
    const checklist = await pack.locator("ul.checklist > li").allTextContents();
    expect(checklist.length).toBeGreaterThan(0);
    expect(checklist.join("\n")).toMatch(/Budget/);

    // doc.summary.create → at most max_sentences sentences, the off-topic one left out
    const summary = await submitCommand(page, "doc.summary.create", {
      text: "NATS JetStream stores messages durably. It replays them to consumers in order. Consumers acknowledge each message after processing. The weather was nice yesterday. JetStream also deduplicates messages by their id within a window.",
      max_sentences: "2",
    });
    await workEntry(page, summary, "done");
    const sentences = await page.getByTestId(`work-result-${summary}`).locator("ol.sentences > li").allTextContents();
    expect(sentences).toHaveLength(2);
    for (const s of sentences) expect(s.trim().length).toBeGreaterThan(5);
    expect(sentences.join(" ")).not.toMatch(/weather/);

    // calendar.options.create → three slot options inside the window and outside the busy hour
    // Monday 4 March 2030, 09:00–12:00 Berlin; busy 09:00–10:00 → room for four 30-minute slots.
    const cal = await submitCommand(page, "calendar.options.create", {
      duration_minutes: "30",
      timezone: "Europe/Berlin",
      window_start: "2030-03-04T09:00",
      window_end: "2030-03-04T12:00",
      busy: "2030-03-04T08:00:00Z/2030-03-04T09:00:00Z",
      working_hours_start: "09:00",
      working_hours_end: "17:00",
    });
    await workEntry(page, cal, "done");
    const calResult = page.getByTestId(`work-result-${cal}`);
    expect(await calResult.textContent()).toMatch(/Europe\/Berlin/);
    const slots = calResult.locator("ol.slots > li");
    expect(await slots.count()).toBe(3);
    for (const text of await slots.allTextContents()) expect(text).toMatch(/4 Mar 2030.*\d{2}:\d{2}/);
    const starts = await calResult
      .locator("ol.slots time")
      .evaluateAll((els) => els.map((el) => el.getAttribute("datetime") ?? ""));
    for (const s of starts) {
      const at = Date.parse(s);
      expect(at).toBeGreaterThanOrEqual(Date.parse("2030-03-04T09:00:00Z")); // 10:00 Berlin, after the busy hour
      expect(at + 30 * 60_000).toBeLessThanOrEqual(Date.parse("2030-03-04T11:00:00Z")); // 12:00 Berlin
    }
    expect(new Set(starts).size).toBe(3);

    // external_share.prepare → waits for approval and shows an open ask
    const share = await submitCommand(page, "external_share.prepare", {
      recipient: "partner@example.org",
      resource_ref: "drive:file/42",
      resource_title: "Q3 plan",
      channel: "slack",
      message: "Here is the plan for next quarter.",
    });
    await workEntry(page, share, "waiting_approval");
    const askId = await askOf(page, share);
    const card = page.locator(`[data-testid="asks-open"] [data-testid="ask-${askId}"][data-status="open"]`);
    await card.waitFor();
    const cardText = (await card.textContent()) ?? "";
    expect(cardText).toContain("partner@example.org");
    expect(cardText).toContain("Q3 plan");
    expect(cardText).toContain("Slack");
    expect(cardText).toContain("Here is the plan for next quarter.");
    expect(await page.getByTestId(`ask-risk-${askId}`).getAttribute("data-level")).toBe("RED");
    expect(await page.getByTestId(`ask-expiry-${askId}`).textContent()).toMatch(/Expires in/);
    await page.getByTestId(`approve-${askId}`).waitFor({ state: "visible" });
    await page.getByTestId(`reject-${askId}`).waitFor({ state: "visible" });
    await page.locator('[data-testid="autopilot"][data-status="waiting_approval"]').waitFor();

    // every command in the worklog, newest first: the share on top
    expect(await page.getByTestId("worklog").locator("> li").count()).toBe(5);
    expect(await page.getByTestId("worklog").locator("> li").first().getAttribute("data-testid")).toBe(`work-${share}`);
    expect(errors).toEqual([]);
    expect(await axeSerious(page)).toEqual([]);

    await page.screenshot({ path: path.join(ARTIFACTS, "console-wide.png"), fullPage: true });
    // For the README (docs/console.png is copied from it by hand): one tall viewport, so the
    // fixed status bar sits at the bottom instead of across the middle of a full-page shot.
    await page.setViewportSize({ width: 1280, height: 1400 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(ARTIFACTS, "console-readme.png") });
  });

  it("approves one ask and rejects another by clicking", async () => {
    const t = uniqueTenant("ui");
    const { page, errors } = await openConsole(t);
    const share = (title: string) =>
      submitCommand(page, "external_share.prepare", {
        recipient: "partner@example.org",
        resource_ref: `drive:file/${title}`,
        resource_title: title,
        channel: "email",
        message: `About ${title}`,
      });
    const approveCmd = await share("Roadmap");
    const rejectCmd = await share("Salaries");
    const [approveAsk, rejectAsk] = [await askOf(page, approveCmd), await askOf(page, rejectCmd)];
    expect(approveAsk).not.toBe(rejectAsk);
    const open = page.getByTestId("asks-open");
    await open.locator(`[data-testid="ask-${approveAsk}"][data-status="open"]`).waitFor();
    await open.locator(`[data-testid="ask-${rejectAsk}"][data-status="open"]`).waitFor();
    expect(await page.getByTestId(`ask-${approveAsk}`).textContent()).toContain("Roadmap");
    expect(await page.getByTestId(`ask-${rejectAsk}`).textContent()).toContain("Salaries");

    // approve with a note
    await page.getByTestId(`note-${approveAsk}`).fill("fine to send");
    const [decide] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === `/approvals/${approveAsk}/decide`),
      page.getByTestId(`approve-${approveAsk}`).click(),
    ]);
    expect(decide.status()).toBe(202);
    expect(decide.request().postDataJSON()).toMatchObject({ decision: "approve", note: "fine to send" });
    const approved = page.locator(`[data-testid="asks-recent"] [data-testid="ask-${approveAsk}"][data-status="done"]`);
    await approved.waitFor();
    await expect.poll(() => page.getByTestId(`ask-outcome-${approveAsk}`).textContent()).toMatch(/^Approved and done/);
    // focus followed the decision to its outcome; decider and note are shown
    await expect
      .poll(() => page.evaluate(() => document.activeElement?.getAttribute("data-testid")))
      .toBe(`ask-outcome-${approveAsk}`);
    expect(await page.getByTestId(`ask-decider-${approveAsk}`).textContent()).toMatch(/^Decided by \S+ on /);
    await expect.poll(() => page.getByTestId(`ask-pending-${approveAsk}`).count()).toBe(0);
    await workEntry(page, approveCmd, "done");
    expect(await page.getByTestId(`work-result-${approveCmd}`).textContent()).toMatch(
      /Shared “Roadmap” with partner@example\.org via Email/,
    );

    // reject without a note
    const [deny] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === `/approvals/${rejectAsk}/decide`),
      page.getByTestId(`reject-${rejectAsk}`).click(),
    ]);
    expect(deny.status()).toBe(202);
    await page
      .locator(`[data-testid="asks-recent"] [data-testid="ask-${rejectAsk}"][data-status="cancelled"]`)
      .waitFor();
    await expect.poll(() => page.getByTestId(`ask-outcome-${rejectAsk}`).textContent()).toMatch(/^Rejected/);
    await workEntry(page, rejectCmd, "cancelled");
    expect(await page.getByTestId(`work-${rejectCmd}`).textContent()).toMatch(/Rejected: the action never ran/);
    expect(await page.getByTestId(`work-status-${rejectCmd}`).textContent()).toBe("Cancelled");

    // no decision buttons left, nothing open, autopilot idle
    expect(
      await page.locator(`[data-testid="approve-${approveAsk}"], [data-testid="reject-${rejectAsk}"]`).count(),
    ).toBe(0);
    await expect.poll(() => open.locator("> li").count()).toBe(0);
    await page.locator('[data-testid="autopilot"][data-status="idle"]').waitFor();

    // exactly one share went out: for the approved ask, none for the rejected one
    const outbox = (askId: string) =>
      e.database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();
    expect(await outbox(approveAsk)).toHaveLength(1);
    expect(await outbox(rejectAsk)).toHaveLength(0);

    // A reload rebuilds the page from a snapshot (titles written by another service): what each
    // entry says stays the same.
    const shown = (id: string) =>
      page.evaluate(
        (cid) => [
          document.getElementById(`work-t-${cid}`)?.textContent,
          document.querySelector(`[data-testid="work-status-${cid}"]`)?.textContent,
          document.querySelector(`[data-testid="work-line-${cid}"]`)?.textContent,
        ],
        id,
      );
    const before = [await shown(approveCmd), await shown(rejectCmd)];
    await page.reload();
    await page.waitForFunction(() => (window as W).__nexus?.state != null);
    await workEntry(page, rejectCmd, "cancelled");
    expect([await shown(approveCmd), await shown(rejectCmd)]).toEqual(before);
    expect(before[1]).toEqual(["External share", "Cancelled", "Rejected: the action never ran."]);
    expect(errors).toEqual([]);

    await page.screenshot({ path: path.join(ARTIFACTS, "console-wide-decisions.png"), fullPage: true });
  });

  it("survives a stream-service restart and shows every report exactly once", async () => {
    const t = uniqueTenant("ui");
    const { page, errors, snapshotId } = await openConsole(t);
    const bodies = [
      command("draft_email.create", { to: "kim@example.com", brief: "Confirm Thursday's meeting" }),
      command("doc.summary.create", {
        text: "The stream restarted. The console reconnected. Nothing was lost.",
        max_sentences: 2,
      }),
      command("prep_pack.create", { meeting_title: "Retro", attendees: ["Kim"], agenda: ["What went well"] }),
    ];
    let restarted = false;
    try {
      await e.stack.stop("stream");
      await page.locator('[data-testid="conn-state"][data-state="reconnecting"]').waitFor();
      for (const body of bodies) {
        const r = await e.call("POST", "/sidecar/command", t, body);
        expect(r.status, JSON.stringify(r.body)).toBe(202);
      }
      // still down: the page has seen none of them
      expect(await page.evaluate(() => (window as W).__nexus?.connState)).toBe("reconnecting");
      await e.stack.start("stream");
      restarted = true;
    } finally {
      if (!restarted) await e.stack.start("stream").catch(() => {});
    }

    for (const body of bodies) await workEntry(page, body.command_id, "done");
    await page.locator('[data-testid="conn-state"][data-state="live"]').waitFor();

    // the tenant's whole history, from the start
    const history = await e.stream(t, { query: { cursor: "0" } });
    await history.waitFor(
      (evs) =>
        bodies.every((b) =>
          evs.some(
            (x) =>
              x.event === "report" &&
              x.data?.report?.type === "command.completed" &&
              x.data.causality?.command_id === b.command_id,
          ),
        ),
      15_000,
      "the three commands completed in the history",
    );
    history.close();
    const expected = history
      .reports()
      .map((r) => r.report_id as string)
      .filter((id) => Number(id) > snapshotId);
    expect(expected.length).toBeGreaterThanOrEqual(9); // accepted, started, completed × 3

    // every report of the tenant after the page's snapshot reached the page, none twice, none missing
    await page.waitForFunction((ids) => ids.every((id) => (window as W).__nexus?.applied.includes(id)), expected, {
      timeout: UI_WAIT_MS,
    });
    const applied = await page.evaluate(() => (window as W).__nexus?.applied ?? []);
    expect(new Set(applied).size).toBe(applied.length);
    expect([...applied].sort()).toEqual([...expected].sort());
    const ids = applied.map(Number);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(Math.min(...ids)).toBeGreaterThan(snapshotId);

    const states = await page.evaluate(() => (window as W).__connHistory ?? []);
    const reconnecting = states.indexOf("reconnecting");
    expect(states[0]).toBe("connecting");
    expect(states.indexOf("live")).toBeGreaterThan(0);
    expect(reconnecting).toBeGreaterThan(states.indexOf("live"));
    expect(states.slice(reconnecting)).toContain("live");
    expect(states.at(-1)).toBe("live");
    expect(errors).toEqual([]);

    // each command shows once in the worklog
    for (const b of bodies) expect(await page.locator(`[data-testid="work-${b.command_id}"]`).count()).toBe(1);
    expect(await page.getByTestId("worklog").locator("> li").count()).toBe(3);
  }, 150_000);

  it("works at 375 px", async () => {
    const t = uniqueTenant("ui");
    const { page, errors } = await openConsole(t, { width: 375, height: 800 });
    // some content, so wide results would show up as overflow
    const draft = await submitCommand(page, "draft_email.create", {
      to: "kim@example.com",
      brief: "Thank the team for shipping the release on time",
    });
    await workEntry(page, draft, "done");
    const share = await submitCommand(page, "external_share.prepare", {
      recipient: "a-rather-long-recipient-address@partner.example.org",
      resource_ref: "drive:file/very-long-resource-reference-without-spaces-0123456789",
      resource_title: "Quarterly plan",
      channel: "email",
    });
    await workEntry(page, share, "waiting_approval");
    await page.getByTestId(`approve-${await askOf(page, share)}`).waitFor({ state: "visible" });

    const width = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
    }));
    expect(width.scroll, `scrollWidth ${width.scroll}`).toBeLessThanOrEqual(375);
    await page.getByTestId("command-type").selectOption("draft_email.create");
    const submit = page.getByTestId("submit-command");
    await submit.scrollIntoViewIfNeeded();
    expect(await submit.isVisible()).toBe(true);
    const box = await submit.boundingBox();
    expect(box).not.toBeNull();
    expect(box!.x).toBeGreaterThanOrEqual(0);
    expect(box!.x + box!.width).toBeLessThanOrEqual(375);
    expect(errors).toEqual([]);

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(ARTIFACTS, "console-375.png"), fullPage: true });
  });
  it("honours a deep link through the /ui redirect and serves compressed, cached assets without source maps", async () => {
    const t = uniqueTenant("deep");
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-GB" });
    contexts.push(context);
    const page = await context.newPage();
    const q = new URLSearchParams({ org_id: t.org_id, project_id: t.project_id });
    await page.goto(`${e.stack.gatewayUrl}/ui?${q}`);
    expect(new URL(page.url()).pathname).toBe("/ui/");
    expect(new URL(page.url()).search).toBe(`?${q}`);
    await page.waitForFunction(() => (window as W).__nexus?.state != null);
    expect(await page.evaluate(() => (window as W).__nexus?.tenant)).toEqual(t);
    expect(await page.getByTestId("tenant-current").textContent()).toBe(`${t.org_id}/${t.project_id}`);

    const root = await fetch(`${e.stack.gatewayUrl}/?${q}`, { redirect: "manual" });
    expect(root.status).toBe(302);
    expect(root.headers.get("location")).toBe(`/ui/?${q}`);

    const index = await fetch(`${e.stack.gatewayUrl}/ui/`, { headers: { "accept-encoding": "br, gzip" } });
    expect(index.headers.get("cache-control")).toBe("no-cache");
    const html = await index.text();
    const scripts = [...html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
    expect(scripts.length).toBeGreaterThanOrEqual(2);
    for (const asset of scripts) {
      const res = await fetch(`${e.stack.gatewayUrl}${asset}`, { headers: { "accept-encoding": "br" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-encoding")).toBe("br");
      expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(res.headers.get("vary")).toMatch(/accept-encoding/i);
      const body = await res.text();
      expect(body).not.toMatch(/sourceMappingURL/);
      expect((await fetch(`${e.stack.gatewayUrl}${asset}.map`)).status).toBe(404);
    }
  });
});

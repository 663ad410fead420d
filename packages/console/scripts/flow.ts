/**
 * Drives the built console against `scripts/mock-server.ts` in headless Chromium and checks the
 * stream-driven behaviour end to end: commands, approvals, settings, dedupe, reconnection
 * with a cursor, CURSOR_EXPIRED resync and tenant switching. Screenshots go to /tmp.
 *
 * Usage: tsx scripts/flow.ts [base-url]   (default http://127.0.0.1:4180)
 * This is a development check of the console alone; the real end-to-end tests run against the stack.
 */
import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";

const base = process.argv[2] ?? "http://127.0.0.1:4180";
const org = "acme";
const project = `flow${Date.now().toString(36)}`;
const q = `org_id=${org}&project_id=${project}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const errors: string[] = [];
const mock = (path: string) => fetch(`${base}/__mock/${path}${path.includes("?") ? "&" : "?"}${q}`, { method: "POST" });
const applied = (page: Page) => page.evaluate(() => window.__nexus?.applied ?? []);
const step = (s: string) => console.log(`- ${s}`);

async function submitAndWait(page: Page, type: string, fill: Record<string, string>, status = "done"): Promise<string> {
  await page.getByTestId("command-type").selectOption(type);
  for (const [k, v] of Object.entries(fill)) {
    const el = page.getByTestId(`field-${k}`);
    if ((await el.evaluate((e) => e.tagName)) === "SELECT") await el.selectOption(v);
    else await el.fill(v);
  }
  const prev = await page
    .locator('[data-testid="composer-status"]')
    .getAttribute("data-command-id", { timeout: 50 })
    .catch(() => null);
  await page.getByTestId("submit-command").click();
  const handle = await page.waitForFunction((p) => {
    const el = document.querySelector('[data-testid="composer-status"][data-command-id]');
    const id = el?.getAttribute("data-command-id");
    return id && id !== p ? { id, text: el?.textContent ?? "" } : null;
  }, prev);
  const { id, text } = (await handle.jsonValue()) as { id: string; text: string };
  assert.match(text, /accepted/);
  await page.locator(`[data-testid="work-${id}"][data-status="${status}"]`).waitFor({ timeout: 5000 });
  return id;
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/ui?${q}`);
  await page.waitForFunction(() => window.__nexus?.connState === "live" && window.__nexus.state !== null);
  step(`live, tenant ${await page.getByTestId("tenant-current").textContent()}`);
  assert.equal(await page.getByTestId("autopilot").getAttribute("data-status"), "idle");

  const draft = await submitAndWait(page, "draft_email.create", {
    to: "kim@example.com",
    brief: "Politely decline the offer",
    tone: "formal",
  });
  const draftText = await page.getByTestId(`work-result-${draft}`).textContent();
  assert.match(draftText ?? "", /Politely decline/);
  assert.match((await page.getByTestId("live-region").textContent()) ?? "", /command\.completed/);
  step("draft_email.create done with result");

  await page.getByTestId("field-brief").fill("");
  await page.getByTestId("submit-command").click();
  await page.getByTestId("composer-error").waitFor();
  await page.getByTestId("field-error-brief").waitFor();
  step(`validation error shown: ${(await page.getByTestId("composer-error").textContent())?.slice(0, 80)}`);

  await submitAndWait(page, "doc.summary.create", { text: "One. Two! Three? Four.", max_sentences: "2" });
  await submitAndWait(page, "prep_pack.create", {
    meeting_title: "Q1 review",
    attendees: "Kim\nLee",
    agenda: "Numbers\nRisks",
    docs: "drive:q1",
  });
  const cal = await submitAndWait(page, "calendar.options.create", {});
  assert.equal(await page.locator(`[data-testid="work-result-${cal}"] li`).count(), 3);
  step("summary, prep pack and calendar done");

  const share = await submitAndWait(
    page,
    "external_share.prepare",
    {
      recipient: "partner@example.org",
      resource_ref: "drive:file/9",
      resource_title: "Deck",
      channel: "slack",
      message: "Here you go",
    },
    "waiting_approval",
  );
  const ask = page.locator('[data-testid="asks-open"] > li').first();
  await ask.waitFor();
  const askId = (await ask.getAttribute("data-testid"))!.slice("ask-".length);
  assert.equal(await page.getByTestId("autopilot").getAttribute("data-status"), "waiting_approval");
  await page.getByTestId(`note-${askId}`).fill("ok to send");
  await page.screenshot({ path: "/tmp/console-flow-ask-1280.png", fullPage: true });
  await page.getByTestId(`approve-${askId}`).click();
  await page.getByTestId(`ask-pending-${askId}`).waitFor();
  step(`pending: ${await page.getByTestId(`ask-pending-${askId}`).textContent()}`);
  await page.locator(`[data-testid="ask-${askId}"][data-status="done"]`).waitFor({ timeout: 5000 });
  assert.equal(await page.getByTestId(`ask-outcome-${askId}`).textContent(), "Executed · decided by console-user");
  await page.locator(`[data-testid="work-${share}"][data-status="done"]`).waitFor();
  step("approve → Executed, share result in the worklog");

  await submitAndWait(page, "external_share.prepare", {}, "waiting_approval");
  const ask2 = page.locator('[data-testid="asks-open"] > li').first();
  const ask2Id = (await ask2.getAttribute("data-testid"))!.slice("ask-".length);
  await page.getByTestId(`reject-${ask2Id}`).click();
  await page.locator(`[data-testid="ask-${ask2Id}"][data-status="cancelled"]`).waitFor({ timeout: 5000 });
  assert.match((await page.getByTestId(`ask-outcome-${ask2Id}`).textContent()) ?? "", /^Rejected/);
  step("reject → Rejected");

  const before = await applied(page);
  await mock("redeliver");
  await page.waitForTimeout(300);
  assert.deepEqual(await applied(page), before, "a redelivered report is not applied twice");
  step(`redelivery ignored (${before.length} applied)`);

  await mock("fail-streams?n=2");
  await mock("drop");
  await page.waitForFunction(() => window.__nexus?.connState === "reconnecting", null, { timeout: 5000 });
  step("reconnecting after drop + 503s");
  await page.waitForFunction(() => window.__nexus?.connState === "live", null, { timeout: 20_000 });
  const afterReconnect = await submitAndWait(page, "doc.summary.create", { text: "After reconnect." });
  const list = await applied(page);
  assert.equal(new Set(list).size, list.length, "no report applied twice");
  step(`live again; command ${afterReconnect.slice(0, 8)} done; ${list.length} applied, no duplicates`);

  await mock("expire-cursors");
  await mock("drop");
  await page.waitForFunction(() => window.__nexus?.connState === "resynced", null, { timeout: 10_000 });
  step("CURSOR_EXPIRED → resynced");

  await page.getByTestId("profile-timezone").fill("America/New_York");
  await page.getByTestId("save-profile").click();
  await page.getByTestId("settings-status-profile").filter({ hasText: "updated" }).waitFor();
  assert.equal(await page.evaluate(() => window.__nexus?.state?.profile.timezone), "America/New_York");
  await page.getByTestId("skin-accent_color").fill("#b91c1c");
  await page.getByTestId("skin-theme").selectOption("dark");
  await page.getByTestId("save-skin").click();
  await page.getByTestId("settings-status-skin").filter({ hasText: "updated" }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.style.getPropertyValue("--accent")), "#b91c1c");
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  await page.getByTestId("compliance-risk-draft_email.create").selectOption("YELLOW");
  await page.getByTestId("save-compliance").click();
  await page.getByTestId("settings-status-compliance").filter({ hasText: "updated" }).waitFor();
  await page.getByTestId("persona-name").fill("Nova");
  await page.getByTestId("save-persona").click();
  await page.getByTestId("settings-status-persona").filter({ hasText: "updated" }).waitFor();
  step("profile, skin, compliance, persona updated via settings.updated");

  // A 1x1 PNG.
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "base64",
  );
  await page.getByTestId("profile-photo").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: png });
  await page.getByTestId("upload-photo").click();
  await page.getByTestId("settings-status-photo").filter({ hasText: "updated" }).waitFor();
  await page.getByTestId("profile-photo-preview").waitFor();
  step("photo uploaded, preview from profile.photo.url");

  await page.screenshot({ path: "/tmp/console-flow-1280.png", fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  await page.screenshot({ path: "/tmp/console-flow-375.png", fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, "no horizontal scrolling at 375 px");
  await page.setViewportSize({ width: 1280, height: 900 });

  await page.getByTestId("tenant-project").fill(`${project}x`);
  await page.getByTestId("tenant-switch").click();
  await page.waitForFunction(() => window.__nexus?.state !== null && window.__nexus?.connState === "live");
  assert.equal(await page.locator('[data-testid="worklog"] > li').count(), 0);
  assert.deepEqual(await applied(page), []);
  assert.match(page.url(), new RegExp(`project_id=${project}x`));
  step("tenant switch → empty state for the new tenant");
} finally {
  await browser.close();
}
if (errors.length > 0) {
  console.error(`page errors:\n${errors.join("\n")}`);
  process.exit(1);
}
console.log("flow ok");

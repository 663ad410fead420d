/**
 * The console's behaviour in Chromium against the mock server (packages/console/scripts/mock-server.ts),
 * for what the real stack does not offer yet or cannot be made to do on demand: the history
 * endpoint, live progress, N-of-M approvals, a principal with roles, `504 ACCEPT_UNCONFIRMED`,
 * `503` on writes, `settings.updated` before the HTTP answer, a dropped stream. The real-stack
 * test (console.browser.test.ts) covers the flows the back end has today.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CAN_RUN, launch, type Mock, openPage, startMock, tenant } from "./mock.ts";

type T = { org_id: string; project_id: string };

describe.skipIf(!CAN_RUN)("console features (mock server, Chromium)", () => {
  let mock: Mock;
  let browser: Awaited<ReturnType<typeof launch>>;
  beforeAll(async () => {
    [mock, browser] = await Promise.all([startMock(), launch()]);
  });
  afterAll(async () => {
    await browser?.close();
    await mock?.close();
  });

  /** A JSON request to the mock as tenant `t`. */
  async function call(t: T, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(`${mock.url}${path}`, {
      method,
      headers: { "content-type": "application/json", "x-org-id": t.org_id, "x-project-id": t.project_id, ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  }

  /** Fills the composer and sends; returns the accepted command id. */
  async function submit(page: Page, type: string, fill: Record<string, string>): Promise<string> {
    await page.getByTestId("command-type").selectOption(type);
    for (const [k, v] of Object.entries(fill)) {
      const el = page.getByTestId(`field-${k}`);
      if ((await el.evaluate((e) => e.tagName)) === "SELECT") await el.selectOption(v);
      else await el.fill(v);
    }
    const [res] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === "/sidecar/command" && r.status() === 202),
      page.getByTestId("submit-command").click(),
    ]);
    return ((await res.json()) as { command_id: string }).command_id;
  }

  async function askFor(page: Page, commandId: string): Promise<string> {
    const h = await page.waitForFunction(
      (cid) =>
        window.__nexus?.state?.asks.find((a) => a.action.command_id === cid && a.status === "open")?.ask_id ?? null,
      commandId,
    );
    return (await h.jsonValue()) as string;
  }

  const focusedTestId = (page: Page) =>
    page.evaluate(() => document.activeElement?.getAttribute("data-testid") ?? document.activeElement?.id ?? null);

  it("shows every parameter of a raised draft email, the requester, risk and countdown; N-of-M approvals; decider, note and time afterwards", async () => {
    const t = tenant("appr");
    await call(t, "PATCH", "/compliance/settings", {
      risk_overrides: { "draft_email.create": "RED" },
      approvals_required: { "draft_email.create": 2 },
    });
    await call(t, "PATCH", "/assistant/skin", { accent_color: "#dc2626" }); // a red accent must not paint Approve
    const { page, errors } = await openPage(browser, mock.url, t);
    const cmd = await submit(page, "draft_email.create", {
      to: "vendor@example.com",
      subject: "Your offer",
      brief: "Politely decline and thank them",
      tone: "formal",
    });
    const askId = await askFor(page, cmd);
    const card = page.locator(`[data-testid="asks-open"] [data-testid="ask-${askId}"]`);
    await card.waitFor();
    const params = page.getByTestId(`ask-params-${askId}`);
    const rows = await params
      .locator("div")
      .evaluateAll((els) => els.map((e) => [e.getAttribute("data-param"), e.querySelector("dd")?.textContent]));
    expect(Object.fromEntries(rows)).toEqual({
      to: "vendor@example.com",
      subject: "Your offer",
      brief: "Politely decline and thank them",
      tone: "Formal",
    });
    expect(await page.getByTestId(`ask-requester-${askId}`).textContent()).toMatch(/kim/);
    expect(await page.getByTestId(`ask-risk-${askId}`).getAttribute("data-level")).toBe("RED");
    const expiry1 = await page.getByTestId(`ask-expiry-${askId}`).textContent();
    expect(expiry1).toMatch(/Expires in 1[45]m \d\ds/);
    await expect.poll(() => page.getByTestId(`ask-expiry-${askId}`).textContent(), { timeout: 3000 }).not.toBe(expiry1);
    expect(await page.getByTestId(`ask-approvals-${askId}`).textContent()).toMatch(/0 of 2 approvals/);

    // Decision colours are fixed, whatever the tenant's accent.
    const colours = await page.evaluate((id) => {
      const bg = (tid: string) => getComputedStyle(document.querySelector(`[data-testid="${tid}"]`)!).backgroundColor;
      return { approve: bg(`approve-${id}`), reject: bg(`reject-${id}`) };
    }, askId);
    expect(colours).toEqual({ approve: "rgb(6, 118, 71)", reject: "rgb(180, 35, 24)" });

    // First approver (another person, over HTTP): 1 of 2, the ask stays open.
    expect(
      (
        await call(
          t,
          "POST",
          `/approvals/${askId}/decide`,
          { decision: "approve", note: "fine by me" },
          { "x-user-id": "lee" },
        )
      ).status,
    ).toBe(202);
    await expect.poll(() => page.getByTestId(`ask-approvals-${askId}`).textContent()).toMatch(/1 of 2 approvals/);
    expect(await page.getByTestId(`ask-approvals-${askId}`).textContent()).toMatch(/lee approved.*fine by me/);
    expect(await card.getAttribute("data-status")).toBe("open");

    // Second approver: this page. Focus follows the decision to its outcome.
    await page.getByTestId(`note-${askId}`).fill("send it");
    await page.getByTestId(`approve-${askId}`).click();
    const outcome = page.getByTestId(`ask-outcome-${askId}`);
    await outcome.waitFor();
    await expect.poll(() => outcome.textContent()).toMatch(/Approved and done/);
    await expect.poll(() => focusedTestId(page)).toBe(`ask-outcome-${askId}`);
    expect(await page.getByTestId(`ask-decider-${askId}`).textContent()).toMatch(/Decided by console-user on \d/);
    expect(await page.getByTestId(`ask-note-${askId}`).textContent()).toBe("send it");
    expect(await page.getByTestId(`ask-approvals-${askId}`).textContent()).toMatch(
      /lee approved.*console-user approved/s,
    );
    await page.locator(`[data-testid="work-${cmd}"][data-status="done"]`).waitFor();
    expect(errors).toEqual([]);
  });

  it("retries a decision answered 504 ACCEPT_UNCONFIRMED with the same body and shows confirming…, never failed", async () => {
    const t = tenant("unconf");
    const { page, errors } = await openPage(browser, mock.url, t);
    const cmd = await submit(page, "external_share.prepare", {
      recipient: "partner@example.org",
      resource_ref: "drive:file/1",
      resource_title: "Deck",
      channel: "email",
    });
    const askId = await askFor(page, cmd);
    await mock.hook("decide-unconfirmed?n=2", t);
    // Every phase the card's status line shows, recorded in the page (they pass quickly).
    await page.evaluate((id) => {
      const seen: string[] = [];
      window.__phases = seen;
      new MutationObserver(() => {
        const el = document.getElementById(`ask-status-${id}`);
        const p = el?.getAttribute("data-phase");
        if (p && seen.at(-1) !== p) seen.push(p);
        if (el?.textContent && /Confirming/.test(el.textContent) && !seen.includes("text:confirming"))
          seen.push("text:confirming");
      }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    }, askId);
    const bodies: string[] = [];
    const statuses: number[] = [];
    page.on("response", (r) => {
      if (new URL(r.url()).pathname === `/approvals/${askId}/decide`) {
        statuses.push(r.status());
        bodies.push(r.request().postData() ?? "");
      }
    });
    await page.getByTestId(`approve-${askId}`).click();
    await page.locator(`[data-testid="asks-recent"] [data-testid="ask-${askId}"]`).waitFor();
    await expect.poll(() => page.getByTestId(`ask-outcome-${askId}`).textContent()).toMatch(/Approved and done/);
    await expect.poll(() => statuses.length, { timeout: 10_000 }).toBe(3);
    expect(statuses).toEqual([504, 504, 202]);
    expect(new Set(bodies).size).toBe(1); // the very same request each time
    const phases: string[] = await page.evaluate(() => window.__phases!);
    expect(phases).toContain("confirming");
    expect(phases).toContain("text:confirming");
    expect(phases).not.toContain("error");
    expect(await page.getByTestId(`ask-error-${askId}`).count()).toBe(0);
    expect(errors).toEqual([]);
  });

  it("says in plain words that nothing was stored on a 503, and sends the same command again on retry", async () => {
    const t = tenant("fail");
    const { page } = await openPage(browser, mock.url, t);
    await mock.hook("fail-writes?n=1", t);
    await page.getByTestId("field-brief").fill("Say thanks");
    await page.getByTestId("submit-command").click();
    const box = page.getByTestId("composer-error");
    await box.waitFor();
    expect(await box.getAttribute("data-code")).toBe("DEPENDENCY_UNAVAILABLE");
    expect(await box.textContent()).toMatch(/briefly unavailable and nothing was saved/);
    expect(await box.textContent()).not.toMatch(/TypeError|Failed to fetch/);
    const [res] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === "/sidecar/command"),
      page.getByTestId("composer-retry").click(),
    ]);
    expect(res.status()).toBe(202);
    const id = ((await res.json()) as { command_id: string }).command_id;
    await page.locator(`[data-testid="work-${id}"][data-status="done"]`).waitFor();
  });

  it("moves focus: the first invalid field after a validation error, the new entry after a submit", async () => {
    const t = tenant("focus");
    const { page } = await openPage(browser, mock.url, t);
    await page.getByTestId("command-type").selectOption("external_share.prepare");
    await page.getByTestId("field-resource_title").fill("Deck");
    await page.getByTestId("submit-command").click();
    await expect.poll(() => focusedTestId(page)).toBe("field-recipient");
    expect(await page.getByTestId("field-recipient").getAttribute("aria-invalid")).toBe("true");
    await page.getByTestId("field-error-resource_ref").waitFor();
    // server-side validation: a malformed address
    await page.getByTestId("field-recipient").fill("not-an-email");
    await page.getByTestId("field-resource_ref").fill("drive:1");
    await page.getByTestId("submit-command").click();
    await page.getByTestId("field-error-recipient").waitFor();
    await expect.poll(() => focusedTestId(page)).toBe("field-recipient");
    // a good one: focus lands on the new entry
    await page.getByTestId("command-type").selectOption("doc.summary.create");
    const id = await submit(page, "doc.summary.create", { text: "One. Two. Three." });
    await expect.poll(() => focusedTestId(page)).toBe(`work-${id}`);
  });

  it("confirms a settings save whether its report comes before or after the HTTP answer, and keeps unsaved input when another tab saves", async () => {
    const t = tenant("settings");
    const { page } = await openPage(browser, mock.url, t);
    await page.getByTestId("nav-settings").click();
    await page.getByTestId("settings-view").waitFor();
    await expect.poll(() => focusedTestId(page)).toBe("settings-title");
    await mock.hook("settings-report-first?on=1", t);
    await page.getByTestId("persona-name").fill("Nova");
    await page.getByTestId("save-persona").click();
    await page.locator('[data-testid="settings-status-persona"][data-phase="updated"]').waitFor({ timeout: 5000 });
    expect(await page.evaluate(() => window.__nexus!.state!.assistant.persona.name)).toBe("Nova");
    await mock.hook("settings-report-first?on=0", t);

    // Unsaved input in the profile form; another tab saves the profile.
    await page.getByTestId("profile-display_name").fill("Kim (typing)");
    const other = await call(t, "PATCH", "/profile", { timezone: "Asia/Seoul" }, { "x-correlation-id": "other-tab-1" });
    expect(other.status).toBe(202);
    await page.getByTestId("settings-elsewhere-profile").waitFor();
    expect(await page.getByTestId("profile-display_name").inputValue()).toBe("Kim (typing)");
    expect(await page.getByTestId("profile-timezone").inputValue()).toBe("Asia/Seoul"); // untouched field follows the stream
    await page.getByTestId("save-profile").click();
    await page.locator('[data-testid="settings-status-profile"][data-phase="updated"]').waitFor();
    expect(await page.evaluate(() => window.__nexus!.state!.profile.display_name)).toBe("Kim (typing)");
    expect(await page.getByTestId("settings-dirty-profile").count()).toBe(0);
  });

  it("loads older entries from the history endpoint, and hides the control when the endpoint answers 404", async () => {
    const t = tenant("hist");
    await mock.hook("seed?n=300", t);
    const { page } = await openPage(browser, mock.url, t);
    const count = () => page.evaluate(() => window.__nexus!.state!.worklog.length);
    // The snapshot carries 50; one page is fetched at once so a reload shows as much as before.
    await expect.poll(count).toBeGreaterThan(50);
    const before = await count();
    const more = page.getByTestId("load-older");
    await page.getByTestId("worklog-scroll").evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await more.click();
    await expect.poll(count).toBeGreaterThan(before);
    const ids: string[] = await page.evaluate(() => window.__nexus!.state!.worklog.map((w) => w.command_id));
    expect(new Set(ids).size).toBe(ids.length);
    // virtualised: far fewer rows in the DOM than entries
    expect(await page.locator('[data-testid="worklog"] > li').count()).toBeLessThan(40);

    const t2 = tenant("nohist");
    await mock.hook("seed?n=80", t2);
    await mock.hook("history?enabled=0", t2);
    const { page: p2, errors } = await openPage(browser, mock.url, t2);
    await expect.poll(() => p2.getByTestId("load-older").count()).toBe(0);
    expect(await p2.evaluate(() => window.__nexus!.state!.worklog.length)).toBe(50);
    expect(errors).toEqual([]);
  });

  it("streams live progress into the running entry", async () => {
    const t = tenant("prog");
    const { page } = await openPage(browser, mock.url, t);
    // The mock keeps the command running after its progress until released, so what the entry
    // shows is checked while it runs, however slowly the page renders.
    await mock.hook("hold?on=1", t);
    const id = await submit(page, "draft_email.create", { brief: "Progress please" });
    const entry = page.getByTestId(`work-progress-${id}`);
    await expect
      .poll(() => entry.textContent(), { timeout: 10_000 })
      .toMatch(/Dear colleague, thank you for your message/);
    expect(await entry.locator("progress").getAttribute("value")).toBe("90"); // the last event's percent
    expect(await page.locator(`[data-testid="work-${id}"]`).getAttribute("data-status")).toBe("running");
    expect(await mock.hook("release", t)).toMatchObject({ released: 1 });
    await page.locator(`[data-testid="work-${id}"][data-status="done"]`).waitFor();
    expect(await entry.count()).toBe(0); // gone once done
  });

  it("shows controls by role when the snapshot names a principal, and everything without one", async () => {
    const t = tenant("roles");
    const setup = await call(t, "POST", "/sidecar/command", {
      type: "external_share.prepare",
      params: { recipient: "p@example.org", resource: { ref: "r", title: "T" }, channel: "email" },
    });
    expect(setup.status).toBe(202);
    const visible = async (roles: string) => {
      await mock.hook(`principal?roles=${roles}`, t);
      const { page, context } = await openPage(browser, mock.url, t);
      await page.locator('[data-testid="asks-open"] > li').first().waitFor();
      const r = {
        approve: await page.locator('[data-testid^="approve-"]').count(),
        composer: await page.getByTestId("composer-form").count(),
        settings: await page.getByTestId("nav-settings").count(),
      };
      await context.close();
      return r;
    };
    expect(await visible("viewer")).toEqual({ approve: 0, composer: 0, settings: 0 });
    expect(await visible("approver")).toEqual({ approve: 1, composer: 0, settings: 0 });
    expect(await visible("operator")).toEqual({ approve: 0, composer: 1, settings: 0 });
    expect(await visible("admin")).toEqual({ approve: 1, composer: 1, settings: 1 });
    expect(await visible("")).toEqual({ approve: 1, composer: 1, settings: 1 });
  });

  it("speaks Korean when the profile says so, and shows slots in the zone the command asked for", async () => {
    const t = tenant("ko");
    await call(t, "PATCH", "/profile", { locale: "ko-KR", timezone: "Europe/Berlin" });
    const { page, errors } = await openPage(browser, mock.url, t, { locale: "en-GB" });
    await expect.poll(() => page.evaluate(() => document.documentElement.lang)).toBe("ko");
    await expect.poll(() => page.getByTestId("submit-command").textContent()).toBe("보내기");
    expect(await page.locator("#worklog-h").textContent()).toBe("작업 기록");
    const id = await submit(page, "calendar.options.create", {
      duration_minutes: "30",
      timezone: "Asia/Kathmandu",
      window_start: "2030-03-04T09:00",
      window_end: "2030-03-04T17:00",
    });
    await page.locator(`[data-testid="work-${id}"][data-status="done"]`).waitFor();
    expect(await page.getByTestId(`work-status-${id}`).textContent()).toBe("완료");
    expect(await page.getByTestId(`slots-zone-${id}`).textContent()).toBe("Asia/Kathmandu 기준 시간");
    const slots = await page.locator(`[data-testid="work-result-${id}"] ol.slots li`).allTextContents();
    expect(slots).toHaveLength(3);
    // 09:00, 11:00, 13:00 in Kathmandu (not 04:15… in Berlin)
    expect(slots[0]).toMatch(/오전 0?9:00/);
    expect(slots[1]).toMatch(/오전 11:00/);
    expect(slots[2]).toMatch(/오후 0?1:00/);
    // After a reload (params are not in the worklog) the zone is still the one asked for.
    await page.reload();
    await page.waitForFunction(() => window.__nexus?.state != null);
    await page.getByTestId(`work-toggle-${id}`).click();
    expect(await page.getByTestId(`slots-zone-${id}`).textContent()).toBe("Asia/Kathmandu 기준 시간");
    expect(errors).toEqual([]);
  });

  it("shows a disconnected banner and stale markers while reconnecting, a skeleton before the first snapshot, and clears the footer on a tenant switch", async () => {
    const t = tenant("conn");
    await mock.hook("fail-streams?n=1", t);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-GB" });
    const page = await context.newPage();
    await page.goto(`${mock.url}/ui/?org_id=${t.org_id}&project_id=${t.project_id}`);
    await page.getByTestId("worklog-loading").waitFor();
    expect(await page.getByTestId("worklog-loading").getAttribute("aria-busy")).toBe("true");
    await page.waitForFunction(() => window.__nexus?.connState === "live", null, { timeout: 15_000 });
    await submit(page, "doc.summary.create", { text: "Hello there. Bye." });
    await expect.poll(() => page.getByTestId("live-region").textContent()).toMatch(/Document summary/);

    await mock.hook("fail-streams?n=2", t);
    await mock.hook("drop", t);
    await page.getByTestId("conn-banner").waitFor();
    expect(await page.getByTestId("conn-banner").textContent()).toMatch(/Reconnecting/i);
    expect(await page.locator('.work-panel[data-stale="true"]').count()).toBe(1);
    await page.waitForFunction(() => window.__nexus?.connState === "live", null, { timeout: 20_000 });
    expect(await page.getByTestId("conn-banner").count()).toBe(0);

    await page.getByTestId("tenant-summary").click();
    await page.getByTestId("tenant-project").fill(`${t.project_id}b`);
    await page.getByTestId("tenant-switch").click();
    await page.waitForFunction((p) => window.__nexus?.tenant?.project_id === p, `${t.project_id}b`);
    expect(await page.getByTestId("live-region").textContent()).toBe("");
    expect(page.url()).toContain(`project_id=${t.project_id}b`);
    // the previous tenant is one click away
    await page.getByTestId("tenant-summary").click();
    await page.getByTestId(`tenant-recent-${t.org_id}-${t.project_id}`).waitFor();
    await context.close();
  });

  it("uses the accent only where it is readable", async () => {
    const t = tenant("accent");
    await call(t, "PATCH", "/assistant/skin", { accent_color: "#facc15", theme: "light" });
    const { page } = await openPage(browser, mock.url, t);
    await page.waitForFunction(() => document.documentElement.style.getPropertyValue("--accent-fill") === "#facc15");
    const ratio = await page.evaluate(() => {
      const rgb = (c: string) => (c.match(/\d+/g) ?? []).slice(0, 3).map(Number);
      const lum = (c: string) => {
        const [r, g, b] = rgb(c).map((v) => {
          const s = v / 255;
          return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
        }) as [number, number, number];
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const ratio = (a: string, b: string) => {
        const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p) as [number, number];
        return (x + 0.05) / (y + 0.05);
      };
      const s = getComputedStyle(document.querySelector('[data-testid="submit-command"]')!);
      return { submit: ratio(s.backgroundColor, s.color), submitBg: s.backgroundColor };
    });
    expect(ratio.submitBg).toBe("rgb(250, 204, 21)"); // the accent, with dark text on it
    expect(ratio.submit).toBeGreaterThanOrEqual(4.5);
    // as text on white the yellow (1.53:1) is not used
    expect(
      await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue("--accent-light")),
    ).toBe("#4f46e5");
  });
});

/**
 * Accessibility and looks: axe-core (from node_modules, injected into the page) must find no
 * serious or critical violation in light and dark, Korean and English, desktop (1280×800) and
 * mobile (390×844), on the console and the settings view; screenshots of each go to docs/ for
 * the README. Runs against the mock server with a tenant that has history, open asks (one
 * needing two approvers) and finished commands.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { axeSerious, CAN_RUN, DOCS, launch, type Mock, openPage, startMock, tenant } from "./mock.ts";

type T = { org_id: string; project_id: string };

const VARIANTS = [
  { name: "desktop", viewport: { width: 1280, height: 800 }, locale: "en", scheme: "light" },
  { name: "mobile", viewport: { width: 390, height: 844 }, locale: "en", scheme: "light" },
  { name: "desktop-ko", viewport: { width: 1280, height: 800 }, locale: "ko-KR", scheme: "light" },
  { name: "mobile-ko", viewport: { width: 390, height: 844 }, locale: "ko-KR", scheme: "light" },
  { name: "desktop-dark", viewport: { width: 1280, height: 800 }, locale: "en", scheme: "dark" },
  { name: "mobile-ko-dark", viewport: { width: 390, height: 844 }, locale: "ko-KR", scheme: "dark" },
] as const;

describe.skipIf(!CAN_RUN)("console accessibility and screenshots (mock server, Chromium)", () => {
  let mock: Mock;
  let browser: Awaited<ReturnType<typeof launch>>;
  beforeAll(async () => {
    [mock, browser] = await Promise.all([startMock(), launch()]);
    fs.mkdirSync(DOCS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await mock?.close();
  });

  async function call(t: T, method: string, p: string, body: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(`${mock.url}${p}`, {
      method,
      headers: { "content-type": "application/json", "x-org-id": t.org_id, "x-project-id": t.project_id, ...headers },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(202);
  }

  /** A tenant with history, two open asks (one needs two approvers, one approval in) and results. */
  async function populated(locale: string): Promise<T> {
    const t = tenant("docs");
    await call(t, "PATCH", "/profile", { locale, timezone: "Asia/Seoul", display_name: "Kim Minji" });
    await call(t, "PATCH", "/compliance/settings", {
      risk_overrides: { "draft_email.create": "RED" },
      approvals_required: { "external_share.prepare": 2 },
    });
    await new Promise((r) => setTimeout(r, 500)); // the settings reports are applied
    await mock.hook("seed?n=40", t);
    await call(t, "POST", "/sidecar/command", {
      type: "external_share.prepare",
      params: {
        recipient: "partner@example.org",
        resource: { ref: "drive:file/42", title: "Q3 plan" },
        channel: "slack",
        message: "Here is the plan for next quarter.",
      },
    });
    await call(t, "POST", "/sidecar/command", {
      type: "draft_email.create",
      params: { to: "vendor@example.com", subject: "Your offer", brief: "Politely decline the offer", tone: "formal" },
    });
    await new Promise((r) => setTimeout(r, 900));
    return t;
  }

  for (const v of VARIANTS) {
    it(`${v.name}: no serious or critical axe violations, console and settings; screenshot`, async () => {
      const t = await populated(v.locale === "en" ? "en-GB" : v.locale);
      const { page, context, errors } = await openPage(browser, mock.url, t, {
        viewport: v.viewport,
        locale: v.locale === "en" ? "en-GB" : v.locale,
        timezoneId: "Asia/Seoul",
        colorScheme: v.scheme,
      });
      // one approval in from someone else, to show N-of-M progress
      const ask = (await page
        .waitForFunction(
          () => window.__nexus?.state?.asks.find((a) => a.action.type === "external_share.prepare")?.ask_id,
        )
        .then((h) => h.jsonValue())) as string;
      await call(
        t,
        "POST",
        `/approvals/${ask}/decide`,
        { decision: "approve", note: "Looks fine" },
        { "x-user-id": "lee" },
      );
      await page.getByTestId(`ask-approvals-${ask}`).filter({ hasText: /1/ }).waitFor();
      const lang = v.locale === "en" ? "en" : "ko";
      await page.waitForFunction((l) => document.documentElement.lang === l, lang);
      await page.waitForTimeout(300);

      const violations = await axeSerious(page);
      expect(violations, JSON.stringify(violations, null, 2)).toEqual([]);
      await page.screenshot({ path: path.join(DOCS, `console-${v.name}.png`) });

      if (v.name.startsWith("mobile")) {
        // approvals first: the first Approve button within the first two screens
        const y = await page
          .locator('[data-testid^="approve-"]')
          .first()
          .evaluate((el) => el.getBoundingClientRect().top + window.scrollY);
        expect(y).toBeLessThan(v.viewport.height * 2);
        expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(v.viewport.width);
      }

      await page.getByTestId("nav-settings").click();
      await page.getByTestId("settings-view").waitFor();
      await page.getByTestId("skin-accent_color").waitFor();
      const settingsViolations = await axeSerious(page);
      expect(settingsViolations, JSON.stringify(settingsViolations, null, 2)).toEqual([]);
      if (v.name === "desktop" || v.name === "desktop-ko") {
        await page.screenshot({ path: path.join(DOCS, `console-settings${v.name === "desktop-ko" ? "-ko" : ""}.png`) });
      }
      expect(errors).toEqual([]);
      await context.close();
    });
  }
});

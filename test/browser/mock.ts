/**
 * Helpers for the console's browser tests that run against `packages/console/scripts/mock-server.ts`
 * (the in-memory stand-in of the API and the stream) instead of the real stack: for behaviour the
 * back end does not offer yet (history paging, progress events, N-of-M approvals, principals,
 * ACCEPT_UNCONFIRMED) and for load that would take the real stack minutes to produce.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Snapshot, Tenant } from "@nexus/contracts";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { expect } from "vitest";

/** The repository root (this file is test/browser/mock.ts). */
export const ROOT = path.resolve(import.meta.dirname, "../..");
/** Debian's Chromium; playwright-core drives it, no downloaded browser. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** True when Chromium and the built console are both there (tests skip visibly otherwise). */
export const CAN_RUN = fs.existsSync(CHROMIUM) && fs.existsSync(path.join(ROOT, "packages/console/dist/index.html"));
/**
 * Where the screenshots go: the README's `docs/` with `UPDATE_SCREENSHOTS=1`, otherwise a
 * temporary folder (so a test run does not rewrite the committed pictures with pixel noise).
 */
export const DOCS =
  process.env.UPDATE_SCREENSHOTS === "1"
    ? path.join(ROOT, "docs")
    : path.join(os.tmpdir(), "nexus-console-screenshots");

/** The flags every test launches Chromium with. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/**
 * What the console mirrors to `window.__nexus` for tests (`NexusDebug` in
 * packages/console/src/store.ts; the console is outside this tsconfig, so it is restated here).
 */
export interface NexusDebugView {
  /** `report_id`s applied, in order. */
  readonly applied: string[];
  /** The current state as a snapshot, `null` before the first snapshot. */
  readonly state: Snapshot | null;
  readonly connState: "connecting" | "live" | "reconnecting" | "resynced";
  /** `report_id` of the last snapshot or applied report. */
  readonly lastId: number | null;
  readonly tenant: Tenant | null;
  /** Renders after a state change. */
  readonly renders: number;
}

/** One rule axe-core found violated (the fields {@link axeSerious} reads). */
interface AxeViolation {
  id: string;
  impact?: string | null;
  nodes: { target: string[] }[];
}

declare global {
  interface Window {
    /** The console's debug mirror, see {@link NexusDebugView}. */
    __nexus?: NexusDebugView;
    /** Long tasks (> 50 ms) a test's init script records. */
    __long?: { start: number; duration: number }[];
    /** Keystroke delays (ms) a test's init script records. */
    __keys?: number[];
    /** Phases of an ask's status line a test records. */
    __phases?: string[];
    /** axe-core, once {@link axeSerious} evaluated it in the page. */
    axe?: { run(context: Document, options: { resultTypes: string[] }): Promise<{ violations: AxeViolation[] }> };
  }
}

/** A running mock server. */
export interface Mock {
  url: string;
  /** POSTs a `/__mock/...` hook for `tenant`; returns its JSON answer. */
  hook(pathAndQuery: string, tenant: { org_id: string; project_id: string }): Promise<unknown>;
  close(): Promise<void>;
}

/** Starts the mock server on a free port and waits until it listens. */
export async function startMock(): Promise<Mock> {
  const tsx = path.join(ROOT, "node_modules/.bin/tsx");
  const child: ChildProcess = spawn(tsx, [path.join(ROOT, "packages/console/scripts/mock-server.ts"), "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`mock server did not start: ${out}`)), 30_000);
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      const m = /http:\/\/127\.0\.0\.1:(\d+)\/ui/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${m[1]}`);
      }
    });
    child.stderr?.on("data", (b: Buffer) => {
      out += b.toString();
    });
    child.on("exit", (code) => reject(new Error(`mock server exited with ${code}: ${out}`)));
  });
  return {
    url,
    async hook(pathAndQuery, tenant) {
      const sep = pathAndQuery.includes("?") ? "&" : "?";
      const q = new URLSearchParams({ org_id: tenant.org_id, project_id: tenant.project_id });
      const res = await fetch(`${url}/__mock/${pathAndQuery}${sep}${q}`, { method: "POST" });
      return res.json();
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Launches Debian's Chromium headless. */
export function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** A unique tenant for one test. */
export function tenant(prefix: string): { org_id: string; project_id: string } {
  return { org_id: prefix, project_id: `p-${Math.random().toString(36).slice(2, 8)}` };
}

/** Options of {@link openPage}. */
export interface OpenOptions {
  viewport?: { width: number; height: number };
  locale?: string;
  timezoneId?: string;
  colorScheme?: "light" | "dark";
  /** Extra query parameters besides the tenant. */
  query?: Record<string, string>;
  initScript?: string;
}

/** Opens the console for `t` in a fresh context and waits until it shows the first snapshot. */
export async function openPage(
  browser: Browser,
  base: string,
  t: { org_id: string; project_id: string },
  o: OpenOptions = {},
): Promise<{ page: Page; context: BrowserContext; errors: string[] }> {
  const context = await browser.newContext({
    viewport: o.viewport ?? { width: 1280, height: 800 },
    locale: o.locale ?? "en-GB",
    timezoneId: o.timezoneId ?? "Europe/Berlin",
    colorScheme: o.colorScheme ?? "light",
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  if (o.initScript) await page.addInitScript(o.initScript);
  const q = new URLSearchParams({ org_id: t.org_id, project_id: t.project_id, ...o.query });
  await page.goto(`${base}/ui/?${q}`);
  await page.waitForFunction(() => {
    const n = window.__nexus;
    return n?.connState === "live" && n.state != null;
  });
  return { page, context, errors };
}

/**
 * Runs axe-core (from node_modules) in the page; returns violations of impact serious or critical.
 * It is evaluated through the DevTools protocol rather than added as an inline <script>, which
 * the gateway's Content-Security-Policy (`script-src 'self'`) rightly refuses.
 */
export async function axeSerious(page: Page): Promise<{ id: string; impact: string; nodes: string[] }[]> {
  const source = fs.readFileSync(require_resolve("axe-core/axe.min.js"), "utf8");
  // Evaluated by the browser's devtools protocol: the console's CSP (script-src 'self') rightly
  // refuses an injected inline <script>, and the test must not weaken it.
  await page.evaluate(source);
  return page.evaluate(async () => {
    const axe = window.axe!;
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations
      .filter((v): v is AxeViolation & { impact: string } => v.impact === "serious" || v.impact === "critical")
      .map((v) => ({
        id: v.id,
        impact: v.impact,
        nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
      }));
  });
}

function require_resolve(spec: string): string {
  const candidates = [path.join(ROOT, "node_modules", spec), path.join(ROOT, "packages/console/node_modules", spec)];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new Error(`${spec} is not installed (pnpm install)`);
  return found;
}

/**
 * Records every `connState` the page's store mirrors to `window.__nexus` (the store assigns a
 * new object on each change) into `window.__connHistory`, so a test can see
 * `live → reconnecting → live`. A string, so nothing the test transpiler adds ends up in the page.
 */
export const RECORD_CONN_STATES = `(() => {
  let current;
  const history = [];
  Object.defineProperty(window, "__connHistory", { value: history, configurable: true });
  Object.defineProperty(window, "__nexus", {
    configurable: true,
    get() { return current; },
    set(v) {
      current = v;
      const s = v && v.connState;
      if (s && history[history.length - 1] !== s) history.push(s);
    },
  });
})();`;

/** What the console mirrors to `window.__nexus` (packages/console/src/store.ts), as far as the tests read it. */
export interface NexusDebug {
  applied: string[];
  state: { asks: { ask_id: string; action: { command_id: string } }[]; worklog: { command_id: string }[] } | null;
  connState: string;
  lastId: number | null;
  tenant: { org_id: string; project_id: string } | null;
}
/** The page's window with the console's debug mirror and {@link RECORD_CONN_STATES}' history. */
export type W = Window & { __nexus?: NexusDebug; __connHistory?: string[] };

/**
 * Fills the console's composer for `type` (a `<select>` by option, the rest by text), submits
 * it and returns the command id of the gateway's 202 (asserted).
 */
export async function submitComposer(page: Page, type: string, fill: Record<string, string>): Promise<string> {
  await page.getByTestId("command-type").selectOption(type);
  await page.getByTestId(`form-${type}`).waitFor();
  for (const [key, value] of Object.entries(fill)) {
    const field = page.getByTestId(`field-${key}`);
    if ((await field.evaluate((el) => el.tagName)) === "SELECT") await field.selectOption(value);
    else await field.fill(value);
  }
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/sidecar/command"),
    page.getByTestId("submit-command").click(),
  ]);
  const body = (await response.json()) as { command_id?: string; error?: unknown };
  expect(response.status(), JSON.stringify(body)).toBe(202);
  return body.command_id as string;
}

/** Waits until the console's cursor (`window.__nexus.lastId`) reached `reportId`: it shows that report. */
export async function waitForReport(page: Page, reportId: string, timeout: number): Promise<void> {
  await page.waitForFunction((id) => (window.__nexus?.lastId ?? 0) >= Number(id), reportId, {
    timeout,
    polling: 100,
  });
}

/** What {@link burstWhileTyping} saw. */
export interface TypedBurst {
  /** `report_id` of the burst's last report. */
  last: string;
  /** How long the mock server took to send the burst, ms. */
  ms: number;
  /** Keystrokes typed during the burst. */
  typed: number;
  /** Round trip of each keystroke through the devtools protocol, ms. */
  keyLatencies: number[];
}

/**
 * Has the mock server send `n` reports at `rate` per second (`/__mock/burst`) to `tenant` while
 * typing "x" into the focused field every 100 ms, as a user would; resolves once the server has
 * sent the last one (the page may still be applying them: see {@link waitForReport}).
 */
export async function burstWhileTyping(
  page: Page,
  mock: Mock,
  tenant: { org_id: string; project_id: string },
  n: number,
  rate: number,
): Promise<TypedBurst> {
  let done = false;
  const burst = (mock.hook(`burst?n=${n}&rate=${rate}`, tenant) as Promise<{ last: string; ms: number }>).finally(
    () => {
      done = true;
    },
  );
  let typed = 0;
  const keyLatencies: number[] = [];
  while (!done) {
    const k0 = Date.now();
    await page.keyboard.type("x");
    keyLatencies.push(Date.now() - k0);
    typed++;
    await new Promise((r) => setTimeout(r, 100));
  }
  const { last, ms } = await burst;
  return { last, ms, typed, keyLatencies };
}

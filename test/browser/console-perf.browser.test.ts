/**
 * The console under load, measured in Chromium: a burst of reports (default 5,000 at 500 per
 * second, `PERF_REPORTS` / `PERF_RATE` to change) from the mock server, which speaks the real
 * SSE format. A PerformanceObserver records every long task (> 50 ms) on the page's main thread
 * while the test types into the composer during the burst; the delay of every keystroke (from
 * the event's creation to its handler) is recorded too. The figures are printed, then checked:
 * no task of 50 ms or more, input answered within 100 ms, every report applied exactly once.
 * The root vitest config runs this file after all others, alone (`sequence.groupOrder`), so that
 * the suite's own tests do not compete for the CPU it measures.
 *
 * A short warm-up burst comes first and is not checked: the first reports after page load can
 * pay once for V8 compiling the apply and render paths and for the work log's first layout (in
 * some runs one task of 55–95 ms on a slow 2-core machine; printed as "warm-up"). What is
 * checked is the console under a sustained burst.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { burstWhileTyping, CAN_RUN, launch, type Mock, openPage, startMock, tenant, waitForReport } from "./mock.ts";

const N = Number(process.env.PERF_REPORTS ?? 5000);
const RATE = Number(process.env.PERF_RATE ?? 500);
/** Reports of the unchecked warm-up burst (see the module doc). */
const WARMUP = Number(process.env.PERF_WARMUP_REPORTS ?? 250);
/** How long the page may take after the burst to show the last report. */
const DRAIN_MS = Number(process.env.PERF_DRAIN_MS ?? 30_000);

/** Installed before the console's own code: long tasks and keystroke delays. */
const OBSERVE = `(() => {
  window.__long = [];
  window.__keys = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: "longtask", buffered: true });
  addEventListener("keydown", (e) => window.__keys.push(performance.now() - e.timeStamp), true);
})();`;

describe.skipIf(!CAN_RUN)("console under a report burst (mock server, Chromium)", () => {
  let mock: Mock;
  let browser: Awaited<ReturnType<typeof launch>>;
  beforeAll(async () => {
    [mock, browser] = await Promise.all([startMock(), launch()]);
  });
  afterAll(async () => {
    await browser?.close();
    await mock?.close();
  });

  // One retry: the machine is shared, and another process's CPU spike stretches tasks too.
  it(`keeps every main-thread task under 50 ms while ${N} reports arrive at ${RATE}/s`, {
    timeout: 180_000,
    retry: 1,
  }, async () => {
    const t = tenant("perf");
    const { page, errors } = await openPage(browser, mock.url, t, { initScript: OBSERVE });
    await page.getByTestId("field-brief").click();
    const beforeWarm = await page.evaluate(() => window.__long!.length);
    const warm = (await mock.hook(`burst?n=${WARMUP}&rate=${RATE}`, t)) as { last: string };
    await waitForReport(page, warm.last, DRAIN_MS);
    const warmLong = await page.evaluate(
      (from) => Math.max(0, ...window.__long!.slice(from).map((l) => l.duration)),
      beforeWarm,
    );
    const base = await page.evaluate(() => window.__long!.length);
    const t0 = await page.evaluate(() => performance.now());

    const started = Date.now();
    const { last, ms, typed, keyLatencies } = await burstWhileTyping(page, mock, t, N, RATE);
    const burstEnd = Date.now();
    await waitForReport(page, last, DRAIN_MS);
    const drainMs = Date.now() - burstEnd;

    const m = await page.evaluate(
      ([b, start]) => {
        const w = window;
        const long: { start: number; duration: number }[] = w.__long!.slice(b);
        const applied: string[] = w.__nexus!.applied;
        return {
          longCount: long.length,
          longMax: Math.max(0, ...long.map((l) => l.duration)),
          longTotal: long.reduce((s, l) => s + l.duration, 0),
          longList: long.map((l) => `${Math.round(l.start - start)}ms+${Math.round(l.duration)}`).join(" "),
          keys: w.__keys as number[],
          applied: applied.length,
          unique: new Set(applied).size,
          brief: (document.querySelector('[data-testid="field-brief"]') as HTMLTextAreaElement | null)?.value ?? "",
          rows: document.querySelectorAll('[data-testid="worklog"] > li').length,
        };
      },
      [base, t0] as const,
    );
    const sorted = [...m.keys].sort((a, b) => a - b);
    const p95 = sorted[Math.floor(sorted.length * 0.95)] ?? 0;
    const maxDelay = sorted.at(-1) ?? 0;
    console.log(
      [
        `burst: ${N} reports at ${RATE}/s sent in ${ms} ms (${Date.now() - started} ms with drain)`,
        `long tasks: count=${m.longCount} max=${m.longMax.toFixed(1)} ms total=${m.longTotal.toFixed(0)} ms ${m.longList && `(at ${m.longList})`}`,
        `input: ${typed} keystrokes, delay max=${maxDelay.toFixed(1)} ms p95=${p95.toFixed(1)} ms; ` +
          `round trip max=${Math.max(...keyLatencies)} ms`,
        `drain after burst: ${drainMs} ms; applied=${m.applied} unique=${m.unique}; rendered rows=${m.rows}`,
        `warm-up (${WARMUP} reports, not checked): longest task ${warmLong.toFixed(1)} ms`,
      ].join("\n"),
    );

    expect(errors).toEqual([]);
    expect(m.unique).toBe(m.applied);
    expect(m.applied).toBeGreaterThanOrEqual(N + WARMUP);
    expect(m.brief).toBe("x".repeat(typed));
    expect(m.rows).toBeLessThan(200); // virtualised: only what is near the viewport is in the DOM
    expect(m.longMax, "longest main-thread task (ms)").toBeLessThan(50);
    expect(maxDelay, "largest input delay (ms)").toBeLessThan(100);
  });
});

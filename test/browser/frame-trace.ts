/**
 * How long the console's main-thread tasks are under a report burst, from Chromium's own trace
 * (not a test: the load test `console-perf.browser.test.ts` checks the 50 ms bound; this shows
 * the whole distribution, to compare two versions of the console).
 *
 *   pnpm --filter @nexus/console build && node test/browser/frame-trace.ts
 *
 * Each run opens the console on the mock server, sends an unmeasured warm-up burst, then traces
 * a burst of `PERF_REPORTS` (default 5,000) reports at `PERF_RATE` (500) per second while typing
 * into the composer, as the load test does. From the trace (categories `devtools.timeline` and
 * `disabled-by-default-devtools.timeline`) it takes every `RunTask` of the page's renderer main
 * thread (`CrRendererMain`) and prints, for the tasks of 4 ms or more: their number, p50, p90,
 * p99 and longest duration, their sum (ms), and how many reached 30 and 50 ms. `TRACE_RUNS`
 * (default 3) runs; `CPU_THROTTLE` (default 1) slows the page's CPU by that factor
 * (`Emulation.setCPUThrottlingRate`). Tracing costs the page some time itself: compare figures
 * taken the same way, not with the load test's.
 */
import { burstWhileTyping, CAN_RUN, CHROMIUM, launch, openPage, startMock, tenant, waitForReport } from "./mock.ts";

const N = Number(process.env.PERF_REPORTS ?? 5000);
const RATE = Number(process.env.PERF_RATE ?? 500);
const RUNS = Number(process.env.TRACE_RUNS ?? 3);
const THROTTLE = Number(process.env.CPU_THROTTLE ?? 1);
/** Tasks shorter than this (ms) are left out of the distribution (idle ticks, timers). */
const MIN_MS = 4;

/** One event of Chromium's trace format (the fields read here). */
interface TraceEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  args?: { name?: string };
}

/** The figures of one traced burst, ms. */
interface Figures {
  tasks: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  sum: number;
  over30: number;
  over50: number;
}

/** Durations (ms) of the `RunTask` events of the busiest `CrRendererMain` thread. */
function mainThreadTasks(events: TraceEvent[]): number[] {
  const mains = new Set(
    events
      .filter((e) => e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain")
      .map((e) => `${e.pid}:${e.tid}`),
  );
  const byThread = new Map<string, number[]>();
  for (const e of events) {
    const key = `${e.pid}:${e.tid}`;
    if (e.name !== "RunTask" || e.ph !== "X" || !mains.has(key)) continue;
    const list = byThread.get(key) ?? [];
    if (list.length === 0) byThread.set(key, list);
    list.push((e.dur ?? 0) / 1000);
  }
  return [...byThread.values()].sort((a, b) => b.length - a.length)[0] ?? [];
}

/** The figures of {@link Figures} from task durations (ms). */
function figures(durations: number[]): Figures {
  const d = durations.filter((x) => x >= MIN_MS).sort((a, b) => a - b);
  const q = (p: number) => d[Math.min(d.length - 1, Math.floor(d.length * p))] ?? 0;
  return {
    tasks: d.length,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    max: d.at(-1) ?? 0,
    sum: d.reduce((a, b) => a + b, 0),
    over30: d.filter((x) => x >= 30).length,
    over50: d.filter((x) => x >= 50).length,
  };
}

function line(label: string, f: Figures): string {
  const ms = (x: number) => x.toFixed(1);
  return (
    `${label}: tasks>=${MIN_MS}ms=${f.tasks} p50=${ms(f.p50)} p90=${ms(f.p90)} p99=${ms(f.p99)} ` +
    `max=${ms(f.max)} sum=${f.sum.toFixed(0)} >=30ms=${f.over30} >=50ms=${f.over50}`
  );
}

if (!CAN_RUN) {
  console.error(`needs ${CHROMIUM} and packages/console/dist (pnpm --filter @nexus/console build)`);
  process.exit(2);
}
const [mock, browser] = await Promise.all([startMock(), launch()]);
const all: Figures[] = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    const t = tenant("trace");
    const { page } = await openPage(browser, mock.url, t);
    await page.getByTestId("field-brief").click();
    const warm = (await mock.hook(`burst?n=250&rate=${RATE}`, t)) as { last: string };
    await waitForReport(page, warm.last, 60_000);

    const cdp = await page.context().newCDPSession(page);
    if (THROTTLE !== 1) await cdp.send("Emulation.setCPUThrottlingRate", { rate: THROTTLE });
    const events: TraceEvent[] = [];
    cdp.on("Tracing.dataCollected", (d) => events.push(...(d.value as unknown as TraceEvent[])));
    await cdp.send("Tracing.start", {
      categories: "devtools.timeline,disabled-by-default-devtools.timeline",
      transferMode: "ReportEvents",
    });
    const { last } = await burstWhileTyping(page, mock, t, N, RATE);
    await waitForReport(page, last, 60_000);
    const complete = new Promise((r) => cdp.once("Tracing.tracingComplete", r));
    await cdp.send("Tracing.end");
    await complete;
    const f = figures(mainThreadTasks(events));
    all.push(f);
    console.log(line(`run ${run}`, f));
    await page.close();
  }
} finally {
  await browser.close();
  await mock.close();
}
const median = (k: keyof Figures) => {
  const v = all.map((f) => f[k]).sort((a, b) => a - b);
  return v[Math.floor((v.length - 1) / 2)] ?? 0;
};
const keys = Object.keys(all[0] ?? {}) as (keyof Figures)[];
console.log(
  line(
    `median of ${all.length} (${N} reports at ${RATE}/s, CPU x${THROTTLE})`,
    Object.fromEntries(keys.map((k) => [k, median(k)])) as unknown as Figures,
  ),
);

/**
 * Highest sustainable rate: the highest open-loop rate whose p99 is under 250 ms with at least
 * 99.9 % of the commands completed, for ours and the bare pipeline.
 *
 * Search, per target, in at most `maxSteps` measured steps: the fixed-rate results of the e2e
 * scenario (when it ran) are known points; below the first failure the rate doubles, after it
 * the search bisects between the highest pass and the lowest failure (rounded to 50/s) and stops
 * once they are within 10 % (or 50/s). A step stops early, as a failure, once more unfinished
 * commands are over a second old than the 0.1 % it may lose, so an overloaded step leaves little
 * backlog; the bench then waits for the target to go quiet before the next step.
 *
 * The searches are interleaved, step by step (the pipelines' step n, then ours' step n), so that
 * all sample the same minutes of a machine whose speed drifts (docs/benchmarks.md, Accept).
 */
import { int, ms, pct, ratio, table } from "../format.ts";
import { type OpenLoopResult, runOpenLoop, waitForQuiet } from "../load/open-loop.ts";
import { type Check, ratioAtLeast, registerScenario } from "../scenario.ts";
import type { TargetId } from "../targets.ts";
import { type E2eResult, sustainable } from "./e2e.ts";

/**
 * `pipeline3` and `pipelineDurable` are context, not targets: the bare pipeline publishing the
 * contract's three reports per command instead of one, and that pipeline also recording each
 * command in Postgres and archiving every report there (the writes any implementation of the
 * contract needs). ours / pipeline3 and ours / pipelineDurable show how much of the gap is the
 * contract's report count, how much its durable writes, and how much the rest of ours
 * (authorisation, validation, settings, the hash chain, the stream service's snapshot/replay…).
 */
const TARGETS = ["pipeline", "pipeline3", "pipelineDurable", "ours"] as const satisfies readonly TargetId[];
type MaxTarget = (typeof TARGETS)[number];

/** One measured step. */
export interface MaxStep {
  rate: number;
  pass: boolean;
  p99Ms: number;
  completed: number;
  sent: number;
  aborted: boolean;
  /** The step came from the e2e scenario (not counted against `maxSteps`). */
  fromE2e: boolean;
}

/** Per target: the highest passing rate (0 = none passed) and the steps. */
export type MaxResult = Partial<
  Record<MaxTarget, { highest: number; atCap: boolean; steps: MaxStep[]; highestRun?: OpenLoopResult }>
>;

function step(r: OpenLoopResult, pass: boolean, fromE2e: boolean): MaxStep {
  return { rate: r.rate, pass, p99Ms: r.e2e.p99, completed: r.completed, sent: r.sent, aborted: r.aborted, fromE2e };
}

const round50 = (x: number) => Math.max(50, Math.round(x / 50) * 50);

/**
 * The next rate to try, commands per second, or undefined when the search is done: double the
 * highest pass (500 when nothing passed yet) until something fails, capped at `maxRate`; then
 * bisect between the highest pass and the lowest failure above it, rounded to 50/s, until they
 * are within 10 % (or 50/s) of each other.
 */
export function nextRate(steps: readonly { rate: number; pass: boolean }[], maxRate: number): number | undefined {
  const lo = Math.max(0, ...steps.filter((s) => s.pass).map((s) => s.rate));
  const hi = Math.min(Number.POSITIVE_INFINITY, ...steps.filter((s) => !s.pass && s.rate > lo).map((s) => s.rate));
  if (!Number.isFinite(hi)) return lo >= maxRate ? undefined : Math.min(maxRate, lo > 0 ? lo * 2 : 500);
  if (hi - lo <= Math.max(50, lo * 0.1)) return undefined;
  const rate = round50((lo + hi) / 2);
  return rate <= lo || rate >= hi ? undefined : rate;
}

export const maxScenario = registerScenario<MaxResult>({
  id: "max",
  title: "Highest sustainable rate",
  async run(ctx) {
    const o = ctx.options;
    const e2e = ctx.results.e2e as E2eResult | undefined;
    const searches = [];
    for (const id of TARGETS) {
      const target = await ctx.targets.get(id);
      const feed = await ctx.feed(id);
      await ctx.warmUp(id);
      // The e2e scenario's fixed-rate results are known points (it does not run pipeline3).
      const known: OpenLoopResult[] = id === "pipeline3" ? [] : (e2e?.[id] ?? []);
      const steps: MaxStep[] = known.map((r) => step(r, sustainable(r, o.maxP99Ms, o.minCompletion), true));
      searches.push({ id, target, feed, steps, highestRun: undefined as OpenLoopResult | undefined, done: false });
    }
    for (let n = 0; n < o.maxSteps; n++) {
      for (const s of searches) {
        if (s.done) continue;
        const rate = nextRate(s.steps, o.maxRate);
        if (rate === undefined) {
          s.done = true;
          continue;
        }
        ctx.log(`max: ${s.id} step ${n + 1}/${o.maxSteps} at ${rate}/s for ${o.maxStepMs / 1000} s`);
        const total = Math.round((rate * o.maxStepMs) / 1000);
        const r = await runOpenLoop(s.target, s.feed, {
          rate,
          durationMs: o.maxStepMs,
          timeoutMs: o.timeoutMs,
          connections: o.openConnections,
          abortAfterMs: 4 * o.maxP99Ms,
          maxLost: Math.floor(total * (1 - o.minCompletion)),
        });
        const pass = sustainable(r, o.maxP99Ms, o.minCompletion);
        ctx.log(
          `max: ${s.id} at ${rate}/s: ${pass ? "pass" : "fail"}${r.aborted ? " (stopped early)" : ""}, p99 ${ms(r.e2e.p99)} ms, ${r.completed}/${r.sent}`,
        );
        s.steps.push(step(r, pass, false));
        if (pass && rate >= Math.max(0, ...s.steps.filter((x) => x.pass).map((x) => x.rate))) s.highestRun = r;
        if (!(await waitForQuiet(s.feed, 1000, 30_000))) ctx.log(`max: ${s.id} still busy after 30 s`);
      }
    }
    const out: MaxResult = {};
    for (const s of searches) {
      const highest = Math.max(0, ...s.steps.filter((x) => x.pass).map((x) => x.rate));
      out[s.id] = { highest, atCap: highest >= o.maxRate, steps: s.steps, highestRun: s.highestRun };
    }
    return out;
  },
  render(res, o) {
    const rows: string[][] = [];
    for (const id of TARGETS) {
      const r = res[id];
      if (!r) continue;
      const tried = [...r.steps]
        .sort((a, b) => a.rate - b.rate)
        .map(
          (s) =>
            `${s.rate}${s.pass ? "✓" : "✗"}(${Number.isFinite(s.p99Ms) ? `${ms(s.p99Ms)}ms` : "timeout"}${s.completed < s.sent ? `,${pct(s.sent ? s.completed / s.sent : 0)}` : ""}${s.aborted ? ",stopped" : ""})`,
        )
        .join(" ");
      const lowest = Math.min(...r.steps.map((s) => s.rate));
      rows.push([id, r.highest > 0 ? `${r.atCap ? "≥ " : ""}${int(r.highest)}` : `< ${int(lowest)}`, tried]);
    }
    const u = res.ours;
    for (const base of ["pipeline", "pipeline3", "pipelineDurable"] as const) {
      const b = res[base];
      if (b && u) rows.push([`ours / ${base}`, ratio(u.highest, b.highest), ""]);
    }
    return [
      `## Highest sustainable rate — p99 < ${o.maxP99Ms} ms and ≥ ${pct(o.minCompletion)} completed; ≤ ${o.maxSteps} steps of ${o.maxStepMs / 1000} s`,
      "",
      table(["target", "commands/s", "rates tried (✓ pass, ✗ fail; p99, completed)"], rows),
      "",
      `"≥" = passed at the --max-rate cap (${o.maxRate}/s); the true figure is higher and the ratio overstated.`,
      "pipeline3 = the pipeline with the contract's 3 reports per command; pipelineDurable = pipeline3 recording each command",
      "in Postgres and archiving every report there (both context; the target is against pipeline).",
    ].join("\n");
  },
  checks: maxChecks,
});

/** The highest-rate target, with the same check on `pipelineDurable` as its floor. */
export function maxChecks(res: MaxResult): Check[] {
  const p = res.pipeline?.highest;
  const of = (u: number | undefined) => (p && u !== undefined ? u / p : undefined);
  const r = of(res.ours?.highest);
  const d = of(res.pipelineDurable?.highest);
  return [
    {
      name: "max: ours / pipeline (highest sustainable rate)",
      threshold: "≥ 0.35×",
      ...ratioAtLeast(r, 0.35),
      floor: { target: "pipelineDurable", ...ratioAtLeast(d, 0.35) },
    },
  ];
}

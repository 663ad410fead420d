/**
 * End-to-end at fixed rates: open-loop commands at each rate (200, 500, 1000/s by default), POST
 * → `command.completed` on SSE, ours against the bare pipeline baseline; latency, losses and CPU
 * per completed command of every process. `pipelineDurable` (the pipeline with the contract's
 * three reports and the two Postgres writes any implementation of it needs: the command's row
 * and the reports' archive) runs beside them as context: the target is against `pipeline`.
 */
import type { BenchOptions } from "../cli.ts";
import { int, ms, pct, ratio, table } from "../format.ts";
import { type OpenLoopResult, runOpenLoop, waitForQuiet } from "../load/open-loop.ts";
import { type Check, registerScenario } from "../scenario.ts";
import type { TargetId } from "../targets.ts";

const TARGETS = ["pipeline", "pipelineDurable", "ours"] as const satisfies readonly TargetId[];
type E2eTarget = (typeof TARGETS)[number];

/** Per target, one result per rate (in the order of `--rates`). */
export type E2eResult = Partial<Record<E2eTarget, OpenLoopResult[]>>;

/** Process columns: ours' name, the baselines' counterpart. */
const PAIRS: [string, string | undefined][] = [
  ["gateway", "fastify"],
  ["command-worker", "worker"],
  ["stream", "sse"],
  ["approval-worker", undefined],
  ["archiver", "archiver"],
  ["nats-server", "nats-server"],
  ["postgres", "postgres"],
];

/** Sum of the target's processes per command (load generator excluded), ms. */
export function serverCpuPerCommand(r: OpenLoopResult): number {
  return Object.entries(r.cpuMsPerCommand)
    .filter(([k]) => k !== "load-generator")
    .reduce((a, [, v]) => a + v, 0);
}

/** True when a phase meets the sustainability bound: p99 < `p99Ms`, completion ≥ `minCompletion`. */
export function sustainable(r: OpenLoopResult, p99Ms: number, minCompletion: number): boolean {
  return !r.aborted && r.sent > 0 && r.e2e.p99 < p99Ms && r.completed / r.sent >= minCompletion;
}

export const e2eScenario = registerScenario<E2eResult>({
  id: "e2e",
  title: "End-to-end latency at fixed rates (open loop)",
  async run(ctx) {
    const o = ctx.options;
    const out: E2eResult = {};
    for (const id of TARGETS) {
      await ctx.targets.get(id);
      await ctx.feed(id);
      await ctx.warmUp(id);
    }
    // Rate by rate, the targets take turns, so both meet the machine at the same minutes (its
    // speed drifts: docs/benchmarks.md, Accept).
    for (const rate of o.rates) {
      for (const id of TARGETS) {
        const target = await ctx.targets.get(id);
        const feed = await ctx.feed(id);
        ctx.log(`e2e: ${id} at ${rate}/s for ${o.e2eDurationMs / 1000} s`);
        const r = await runOpenLoop(target, feed, {
          rate,
          durationMs: o.e2eDurationMs,
          timeoutMs: o.timeoutMs,
          connections: o.openConnections,
          // Hopelessly overloaded (1 % of the phase unfinished after half the timeout): stop
          // sending, so the backlog left for the next rate stays bounded.
          abortAfterMs: o.timeoutMs / 2,
          maxLost: Math.ceil((rate * o.e2eDurationMs) / 1000 / 100),
        });
        ctx.log(
          `e2e: ${id} at ${rate}/s: ${r.completed}/${r.sent} completed${r.aborted ? ` (stopped early, overloaded: ${r.sent} of ${r.planned} sent)` : ""}, p50 ${ms(r.e2e.p50)} ms, p99 ${ms(r.e2e.p99)} ms`,
        );
        const list = out[id] ?? [];
        list.push(r);
        out[id] = list;
        if (r.lost > 0 && !(await waitForQuiet(feed, 1000, 60_000))) ctx.log(`e2e: ${id} still busy after 60 s`);
        else await waitForQuiet(feed, 300, 5000);
      }
    }
    return out;
  },
  render(res, o) {
    const lat: string[][] = [];
    const cpu: string[][] = [];
    o.rates.forEach((rate, i) => {
      const p = res.pipeline?.[i];
      const d = res.pipelineDurable?.[i];
      const u = res.ours?.[i];
      for (const [id, r] of [
        ["pipeline", p],
        ["pipelineDurable", d],
        ["ours", u],
      ] as const) {
        if (!r) continue;
        lat.push([
          String(rate),
          id,
          `${int(r.completed)}/${int(r.sent)}${r.aborted ? ` of ${int(r.planned)}*` : ""}`,
          pct(r.sent ? r.completed / r.sent : 0),
          ms(r.e2e.p50),
          ms(r.e2e.p99),
          ms(r.e2e.max),
          ms(r.accept.p50),
          ms(r.accept.p99),
          ms(r.maxSendLagMs),
        ]);
        cpu.push([
          String(rate),
          id,
          ...PAIRS.map(([ours, base]) => ms(r.cpuMsPerCommand[id === "ours" ? ours : (base ?? "")])),
          ms(serverCpuPerCommand(r)),
          ms(r.cpuMsPerCommand["load-generator"]),
        ]);
      }
      for (const [name, b] of [
        ["pipeline", p],
        ["pipelineDurable", d],
      ] as const) {
        if (!b || !u) continue;
        lat.push([
          String(rate),
          `ours / ${name}`,
          "",
          "",
          ratio(u.e2e.p50, b.e2e.p50),
          ratio(u.e2e.p99, b.e2e.p99),
          ratio(u.e2e.max, b.e2e.max),
          ratio(u.accept.p50, b.accept.p50),
          ratio(u.accept.p99, b.accept.p99),
          "",
        ]);
        cpu.push([
          String(rate),
          `ours / ${name}`,
          ...PAIRS.map(([ours, base]) => (base ? ratio(u.cpuMsPerCommand[ours], b.cpuMsPerCommand[base]) : "")),
          ratio(serverCpuPerCommand(u), serverCpuPerCommand(b)),
          "",
        ]);
      }
    });
    return [
      `## End-to-end — open loop, POST → command.completed on SSE, ${o.e2eDurationMs / 1000} s per rate, ${o.tenants} tenants`,
      "",
      table(
        ["rate/s", "target", "done/sent", "done", "p50 ms", "p99 ms", "max ms", "202 p50", "202 p99", "send lag"],
        lat,
      ),
      "",
      "Latency from each command's scheduled send time; a lost command (no 202, failed, or no completion",
      `within ${o.timeoutMs / 1000} s) counts as infinitely slow ("timeout"). send lag = the load generator's worst delay.`,
      `* = stopped sending early: 1 % of the phase was unfinished ${o.timeoutMs / 2000} s after its send (overloaded).`,
      "pipelineDurable = the pipeline with the contract's 3 reports, each command recorded in Postgres and every report archived there (context; the target is against pipeline).",
      "",
      "### CPU ms per completed command",
      "",
      table(
        [
          "rate/s",
          "target",
          "gateway|fastify",
          "cmd-worker|worker",
          "stream|sse",
          "approval-w",
          "archiver",
          "nats",
          "postgres",
          "all servers",
          "load gen",
        ],
        cpu,
      ),
    ].join("\n");
  },
  checks: e2eChecks,
});

/** The p99 target at 500 commands/s, with the same check on `pipelineDurable` as its floor. */
export function e2eChecks(res: E2eResult, o: Pick<BenchOptions, "rates">): Check[] {
  const i = o.rates.indexOf(500);
  const r = i >= 0 ? res.ours?.[i] : undefined;
  const d = i >= 0 ? res.pipelineDurable?.[i] : undefined;
  const p99 = (x: OpenLoopResult | undefined) =>
    x ? (Number.isFinite(x.e2e.p99) ? `${ms(x.e2e.p99)} ms` : "timeout") : "–";
  return [
    {
      name: "e2e: ours p99 at 500 commands/s",
      value: p99(r),
      threshold: "≤ 50 ms",
      pass: r ? r.e2e.p99 <= 50 : undefined,
      floor: { target: "pipelineDurable", value: p99(d), pass: d ? d.e2e.p99 <= 50 : undefined },
    },
  ];
}

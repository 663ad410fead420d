// The pure parts of `pnpm bench` (scripts/bench): percentiles, the max-rate search, CPU sampling.
// The bench itself is not part of `pnpm test`; `pnpm bench --quick` exercises the rest.
import { describe, expect, it } from "vitest";
import { parseBenchArgs } from "../../scripts/bench/cli.ts";
import { cpuDelta, sampleCpu } from "../../scripts/bench/cpu.ts";
import { type ClosedLoopResult, median, mergeRounds } from "../../scripts/bench/load/closed-loop.ts";
import type { OpenLoopResult } from "../../scripts/bench/load/open-loop.ts";
import { acceptChecks, acceptRatio } from "../../scripts/bench/scenarios/accept.ts";
import { e2eChecks } from "../../scripts/bench/scenarios/e2e.ts";
import { maxChecks, nextRate } from "../../scripts/bench/scenarios/max.ts";
import { percentile, summarise } from "../../scripts/bench/stats.ts";

describe("bench statistics", () => {
  it("nearest-rank percentiles: p50 of 1..100 is 50, p99 is 99", () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile([7], 0.99)).toBe(7);
  });

  it("a lost command is an infinitely slow sample: 2 % lost makes p99 infinite", () => {
    const xs = [...Array.from({ length: 98 }, () => 5), Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
    const s = summarise(xs);
    expect(s.p50).toBe(5);
    expect(s.p99).toBe(Number.POSITIVE_INFINITY);
    expect(s.mean).toBe(5);
  });
});

/** A closed-loop round: `accepted` 202s in `seconds`, `cpu` ms of the gateway. */
function round(accepted: number, seconds: number, p99: number, cpu: number): ClosedLoopResult {
  return {
    acceptedPerSec: accepted / seconds,
    accepted,
    seconds,
    rejected: 1,
    latency: { p50: p99 / 4, p99, max: p99 * 2, mean: p99 / 3 },
    wallMs: seconds * 1000,
    cpuMs: { gateway: cpu },
    cpuMsPer202: { gateway: cpu / accepted },
    statusCodes: { "503": 1 },
  };
}

describe("accept rounds", () => {
  it("merging rounds adds counts, time and CPU; p99 is the median of the rounds'", () => {
    const m = mergeRounds([round(1000, 1, 10, 400), round(3000, 1, 30, 900), round(2000, 2, 20, 700)]);
    expect(m.accepted).toBe(6000);
    expect(m.seconds).toBe(4);
    expect(m.acceptedPerSec).toBe(1500);
    expect(m.cpuMsPer202.gateway).toBeCloseTo(2000 / 6000);
    expect(m.latency.p99).toBe(20);
    expect(m.latency.max).toBe(60);
    expect(m.rejected).toBe(3);
    expect(m.statusCodes).toEqual({ "503": 3 });
    expect(() => mergeRounds([])).toThrow();
  });

  it("the ratio is the median of the rounds' ratios, so a drift of the machine between rounds cancels", () => {
    // The machine is twice as fast in the last round: totals would mix rounds, per round it is 0.5 each time.
    const rounds = [
      { pubAck: 4000, ours: 2000 },
      { pubAck: 4000, ours: 2000 },
      { pubAck: 8000, ours: 4000 },
    ];
    expect(acceptRatio({ rounds }, "pubAck")).toBe(0.5);
    // Any pair of targets: the acceptCore reference against pubAck, ours against acceptCore.
    const withCore = rounds.map((r, i) => ({ ...r, acceptCore: [3000, 3200, 6000][i] as number }));
    expect(acceptRatio({ rounds: withCore }, "pubAck", "acceptCore")).toBe(0.75);
    expect(acceptRatio({ rounds: withCore }, "acceptCore")).toBe(2000 / 3000);
    expect(
      acceptRatio(
        {
          rounds: [
            { pubAck: 1000, ours: 300 },
            { pubAck: 1000, ours: 900 },
            { pubAck: 1000, ours: 400 },
          ],
        },
        "pubAck",
      ),
    ).toBe(0.4);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});

describe("the targets and their floors", () => {
  /** An open-loop phase at `rate` whose p99 is `p99` ms. */
  const phase = (rate: number, p99: number) =>
    ({ rate, e2e: { p50: p99 / 2, p99, max: p99, mean: p99 / 2 } }) as unknown as OpenLoopResult;

  it("each target is also checked on the reference that does only the unavoidable work", () => {
    const e2e = e2eChecks(
      { ours: [phase(200, 20), phase(500, 149)], pipelineDurable: [phase(200, 9), phase(500, 41)] },
      { rates: [200, 500] },
    );
    expect(e2e).toEqual([
      expect.objectContaining({
        value: "149 ms",
        pass: false,
        floor: { target: "pipelineDurable", value: "41.0 ms", pass: true },
      }),
    ]);
    const step = { steps: [], atCap: false };
    const max = maxChecks({
      pipeline: { highest: 4000, ...step },
      pipelineDurable: { highest: 1000, ...step },
      ours: { highest: 600, ...step },
    });
    expect(max[0]).toMatchObject({ value: "0.15×", pass: false, floor: { value: "0.25×", pass: false } });
    const accept = acceptChecks({ rounds: [{ pubAck: 1000, acceptCore: 700, ours: 650 }] });
    expect(accept[0]).toMatchObject({ value: "0.65×", pass: true, floor: { target: "acceptCore", value: "0.70×" } });
    // A floor that did not run cannot be evaluated (n/a), whatever ours gave.
    expect(e2eChecks({ ours: [phase(500, 30)] }, { rates: [500] })[0]).toMatchObject({
      pass: true,
      floor: { value: "–", pass: undefined },
    });
  });
});

describe("bench options", () => {
  it("warms each target up long enough for the JIT: 6 s (quick 4 s) at 300/s, or --warmup-seconds", () => {
    const full = parseBenchArgs([]);
    const quick = parseBenchArgs(["--quick"]);
    const set = parseBenchArgs(["--quick", "--warmup-seconds", "1.5"]);
    if (full === "help" || quick === "help" || set === "help") throw new Error("unexpected help");
    expect(full.e2eWarmupMs * full.e2eWarmupRate).toBe(1_800_000); // 1,800 commands
    expect(quick.e2eWarmupMs * quick.e2eWarmupRate).toBe(1_200_000); // 1,200 commands
    expect(set.e2eWarmupMs).toBe(1500);
    expect(() => parseBenchArgs(["--warmup-seconds", "0"])).toThrow(/--warmup-seconds must be a positive number/);
  });
});

describe("max-rate search", () => {
  it("doubles from 500 until a failure, then bisects to within 10 %", () => {
    expect(nextRate([], 8000)).toBe(500);
    expect(nextRate([{ rate: 500, pass: true }], 8000)).toBe(1000);
    expect(nextRate([{ rate: 4000, pass: true }], 6000)).toBe(6000);
    expect(nextRate([{ rate: 6000, pass: true }], 6000)).toBeUndefined();
    expect(
      nextRate(
        [
          { rate: 1000, pass: true },
          { rate: 2000, pass: false },
        ],
        8000,
      ),
    ).toBe(1500);
    expect(
      nextRate(
        [
          { rate: 1000, pass: true },
          { rate: 1050, pass: false },
        ],
        8000,
      ),
    ).toBeUndefined();
  });

  it("goes down when the first rate fails", () => {
    expect(nextRate([{ rate: 500, pass: false }], 8000)).toBe(250);
    expect(
      nextRate(
        [
          { rate: 200, pass: false },
          { rate: 100, pass: false },
        ],
        8000,
      ),
    ).toBe(50);
  });
});

describe("CPU sampling from /proc", () => {
  it.runIf(process.platform === "linux")("counts this process's busy loop", () => {
    // Busy until Node itself counts 200 ms of CPU (a loaded machine gives the loop only part of a
    // core, so wall time says little), then /proc must agree to within its tick granularity.
    const before = sampleCpu({ self: process.pid });
    const node0 = process.cpuUsage();
    const deadline = Date.now() + 20_000;
    const used = () => {
      const u = process.cpuUsage(node0);
      return (u.user + u.system) / 1000;
    };
    while (used() < 200 && Date.now() < deadline) {}
    const nodeMs = used();
    const d = cpuDelta(before, sampleCpu({ self: process.pid }));
    expect(nodeMs).toBeGreaterThanOrEqual(200);
    expect(d.self).toBeGreaterThanOrEqual(nodeMs - 50);
    expect(d.self).toBeLessThanOrEqual(nodeMs + 100);
    expect(sampleCpu({ gone: 2 ** 30 }).gone).toBe(0);
  });
});

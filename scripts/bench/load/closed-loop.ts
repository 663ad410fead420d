/**
 * Closed-loop accept load with autocannon: `connections` clients each send the next command as
 * soon as the previous one was answered, for `durationMs`, after an unmeasured warm-up. Every
 * request is a fresh command (new `command_id`, tenants round-robin), so the idempotency path of
 * a real gateway is never taken. Latency percentiles are autocannon's (HdrHistogram, ms).
 */
import { randomUUID } from "node:crypto";
import autocannon from "autocannon";
import { measureCpu } from "../cpu.ts";
import type { Target } from "../targets.ts";

/** Options of {@link runClosedLoop}. */
export interface ClosedLoopOptions {
  /** Concurrent connections, each with one request in flight. */
  connections: number;
  /** Unmeasured warm-up, milliseconds (0 = none). */
  warmupMs: number;
  /** Measured run, milliseconds. */
  durationMs: number;
}

/** The outcome of one closed-loop run. */
export interface ClosedLoopResult {
  /** 202 answers per second of the measured run. */
  acceptedPerSec: number;
  accepted: number;
  /** Answers other than 202 plus connection errors and timeouts. */
  rejected: number;
  /** Response latency, ms: autocannon's p50, p99, max (all answers). */
  latency: { p50: number; p99: number; max: number; mean: number };
  /** Measured run's wall time, ms. */
  wallMs: number;
  /** Measured run's duration as autocannon counted it, seconds (the denominator of `acceptedPerSec`). */
  seconds: number;
  /** CPU of each measured process in the measured run, ms (plus `load-generator`). */
  cpuMs: Record<string, number>;
  /** `cpuMs` divided by `accepted`, ms per 202. */
  cpuMsPer202: Record<string, number>;
  /** Status codes other than 202, with counts. */
  statusCodes: Record<string, number>;
}

function cannon(target: Target, connections: number, durationMs: number): Promise<autocannon.Result> {
  let seq = 0;
  const first = target.request(0, randomUUID());
  return autocannon({
    url: target.origin,
    connections,
    pipelining: 1,
    duration: durationMs / 1000,
    timeout: 10,
    requests: [
      {
        method: "POST",
        path: first.path,
        setupRequest: (req) => {
          const r = target.request(seq++, randomUUID());
          return { ...req, headers: r.headers, body: r.body };
        },
      },
    ],
  });
}

/**
 * Warms up, then measures `target` under closed-loop load.
 * @returns 202/s, latency (ms), CPU per process (ms) and per 202.
 */
export async function runClosedLoop(target: Target, o: ClosedLoopOptions): Promise<ClosedLoopResult> {
  if (o.warmupMs > 0) await cannon(target, o.connections, o.warmupMs);
  const {
    value: r,
    cpuMs,
    wallMs,
  } = await measureCpu(target.pids(), () => cannon(target, o.connections, o.durationMs));
  const statusCodes: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) if (code !== "202") statusCodes[code] = s.count ?? 0;
  const accepted = r.statusCodeStats?.["202"]?.count ?? 0;
  const cpuMsPer202: Record<string, number> = {};
  for (const [k, v] of Object.entries(cpuMs)) cpuMsPer202[k] = accepted > 0 ? v / accepted : Number.NaN;
  return {
    acceptedPerSec: accepted / r.duration,
    accepted,
    seconds: r.duration,
    rejected: r.requests.total - accepted + r.errors,
    latency: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, mean: r.latency.mean },
    wallMs,
    cpuMs,
    cpuMsPer202,
    statusCodes,
  };
}

/** The median of `xs` (the mean of the middle two for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * One result for several measured runs (rounds) of the same target: counts, durations and CPU
 * add up (so `acceptedPerSec` and `cpuMsPer202` are over all rounds); p50 and p99 are the
 * medians of the rounds' (percentiles do not add up), `max` the highest, `mean` weighted by
 * answers.
 * @throws {Error} when `rounds` is empty.
 */
export function mergeRounds(rounds: readonly ClosedLoopResult[]): ClosedLoopResult {
  if (rounds.length === 0) throw new Error("mergeRounds: no rounds");
  const sum = (f: (r: ClosedLoopResult) => number) => rounds.reduce((a, r) => a + f(r), 0);
  const accepted = sum((r) => r.accepted);
  const seconds = sum((r) => r.seconds);
  const cpuMs: Record<string, number> = {};
  const statusCodes: Record<string, number> = {};
  for (const r of rounds) {
    for (const [k, v] of Object.entries(r.cpuMs)) cpuMs[k] = (cpuMs[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.statusCodes)) statusCodes[k] = (statusCodes[k] ?? 0) + v;
  }
  const cpuMsPer202: Record<string, number> = {};
  for (const [k, v] of Object.entries(cpuMs)) cpuMsPer202[k] = accepted > 0 ? v / accepted : Number.NaN;
  const answered = sum((r) => r.accepted + r.rejected);
  return {
    acceptedPerSec: seconds > 0 ? accepted / seconds : 0,
    accepted,
    seconds,
    rejected: sum((r) => r.rejected),
    latency: {
      p50: median(rounds.map((r) => r.latency.p50)),
      p99: median(rounds.map((r) => r.latency.p99)),
      max: Math.max(...rounds.map((r) => r.latency.max)),
      mean: answered > 0 ? sum((r) => r.latency.mean * (r.accepted + r.rejected)) / answered : Number.NaN,
    },
    wallMs: sum((r) => r.wallMs),
    cpuMs,
    cpuMsPer202,
    statusCodes,
  };
}

/**
 * Accept: closed-loop 202 throughput of the HTTP front door, ours against the plain Fastify
 * baseline (the floor of HTTP + JSON here) and the Fastify + PubAck baseline (the floor of a
 * durable accept). Ours runs with its command-worker stopped (see targets.ts), so only what a
 * 202 costs is measured: the pubAck baseline's stream has no consumer either.
 */
import { int, ms, ratio, table } from "../format.ts";
import { type ClosedLoopResult, runClosedLoop } from "../load/closed-loop.ts";
import { registerScenario } from "../scenario.ts";
import type { TargetId } from "../targets.ts";

const TARGETS = ["plain", "pubAck", "ours"] as const satisfies readonly TargetId[];

/** Per target: the closed-loop result. */
export type AcceptResult = Partial<Record<(typeof TARGETS)[number], ClosedLoopResult>>;

/** The HTTP process of each target (`gateway` for ours, `fastify` for a baseline). */
function httpCpu(id: TargetId, r: ClosedLoopResult): number | undefined {
  return r.cpuMsPer202[id === "ours" ? "gateway" : "fastify"];
}

/** Total CPU of the target's processes per 202 (load generator excluded), ms. */
function serverCpu(r: ClosedLoopResult): number {
  return Object.entries(r.cpuMsPer202)
    .filter(([k]) => k !== "load-generator")
    .reduce((a, [, v]) => a + v, 0);
}

export const acceptScenario = registerScenario<AcceptResult>({
  id: "accept",
  title: "Accept throughput (closed loop)",
  runLast: true,
  async run(ctx) {
    const o = ctx.options;
    const out: AcceptResult = {};
    for (const id of TARGETS) {
      const target = await ctx.targets.get(id);
      if (id === "ours") {
        await ctx.closeFeed("ours");
        await target.prepareAccept?.();
      }
      ctx.log(
        `accept: ${id}, ${o.connections} connections, ${o.acceptWarmupMs / 1000} s warm-up + ${o.acceptDurationMs / 1000} s`,
      );
      const r = await runClosedLoop(target, {
        connections: o.connections,
        warmupMs: o.acceptWarmupMs,
        durationMs: o.acceptDurationMs,
      });
      ctx.log(`accept: ${id}: ${int(r.acceptedPerSec)} 202/s, p99 ${ms(r.latency.p99)} ms`);
      out[id] = r;
    }
    return out;
  },
  render(res, o) {
    const rows: string[][] = [];
    for (const id of TARGETS) {
      const r = res[id];
      if (!r) continue;
      rows.push([
        id,
        int(r.acceptedPerSec),
        ms(r.latency.p50),
        ms(r.latency.p99),
        int(r.rejected),
        ms(httpCpu(id, r)),
        ms(r.cpuMsPer202["nats-server"]),
        ms(r.cpuMsPer202.postgres),
        ms(serverCpu(r)),
        ms(r.cpuMsPer202["load-generator"]),
      ]);
    }
    const ours = res.ours;
    for (const base of ["plain", "pubAck"] as const) {
      const b = res[base];
      if (!ours || !b) continue;
      rows.push([
        `ours / ${base}`,
        ratio(ours.acceptedPerSec, b.acceptedPerSec),
        ratio(ours.latency.p50, b.latency.p50),
        ratio(ours.latency.p99, b.latency.p99),
        "",
        ratio(httpCpu("ours", ours), httpCpu(base, b)),
        ratio(ours.cpuMsPer202["nats-server"], b.cpuMsPer202["nats-server"]),
        "",
        ratio(serverCpu(ours), serverCpu(b)),
        "",
      ]);
    }
    return [
      `## Accept — closed loop, ${o.connections} connections, ${o.acceptDurationMs / 1000} s after ${o.acceptWarmupMs / 1000} s warm-up`,
      "",
      table(
        [
          "target",
          "202/s",
          "p50 ms",
          "p99 ms",
          "non-202",
          "CPU ms/202 http",
          "nats",
          "postgres",
          "all servers",
          "load gen",
        ],
        rows,
      ),
      "",
      "http = gateway (ours) or fastify (baselines); all servers = every process of the target; ours ran with its command-worker stopped.",
    ].join("\n");
  },
  checks(res) {
    const r = res.ours && res.pubAck ? res.ours.acceptedPerSec / res.pubAck.acceptedPerSec : undefined;
    return [
      {
        name: "accept: ours / pubAck baseline (202/s)",
        value: r === undefined ? "–" : `${r.toFixed(2)}×`,
        threshold: "≥ 0.60×",
        pass: r === undefined ? undefined : r >= 0.6,
      },
    ];
  },
});

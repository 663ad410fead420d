/**
 * Accept: closed-loop 202 throughput of the HTTP front door, ours against the plain Fastify
 * baseline (the floor of HTTP + JSON here) and the Fastify + PubAck baseline (the floor of a
 * durable accept, on nats.js's stock flush: the target's baseline). Two references: the
 * pubAckCoalesced one is that baseline on a `coalesceWrites` connection, as our services
 * connect (patches/README.md), so ours / pubAckCoalesced compares with the same client setting
 * on both sides; acceptCore (baselines/accept-core.ts: our accept code on bare Fastify,
 * connected as the gateway) splits that gap: acceptCore / pubAckCoalesced is what our accept
 * itself costs, ours / acceptCore what the gateway's layers around it cost (auth, rate limit,
 * headers, logs, …). Ours runs with its command-worker stopped (see targets.ts), so only what a
 * 202 costs is measured: the pubAck baseline's stream has no consumer either.
 *
 * The targets take turns in rounds (`--accept-rounds`): each round measures every target for
 * its share of `--accept-seconds`, one after the other. On a shared host the machine's speed
 * drifts within a run (the pubAck baseline alone ranged 6,000–10,700 202/s between runs here),
 * and a figure measured minutes after its baseline carries that drift into the ratio. Within
 * a round the targets run seconds apart, so the printed ratio is the median of the rounds'
 * ratios, with their range beside it.
 */
import { int, ms, ratio, table } from "../format.ts";
import { type ClosedLoopResult, median, mergeRounds, runClosedLoop } from "../load/closed-loop.ts";
import { type Check, ratioAtLeast, registerScenario } from "../scenario.ts";
import type { TargetId } from "../targets.ts";

const TARGETS = ["plain", "pubAck", "pubAckCoalesced", "acceptCore", "ours"] as const satisfies readonly TargetId[];

type AcceptTarget = (typeof TARGETS)[number];

/** Per target: the closed-loop result over all rounds; `rounds`: each round's 202/s per target. */
export type AcceptResult = Partial<Record<AcceptTarget, ClosedLoopResult>> & {
  rounds?: Partial<Record<AcceptTarget, number>>[];
};

/** The ratio `of` / `base` of 202/s (default `of`: ours) in each round that measured both. */
export function roundRatios(res: AcceptResult, base: AcceptTarget, of: AcceptTarget = "ours"): number[] {
  return (res.rounds ?? []).flatMap((r) =>
    r[of] !== undefined && r[base] ? [(r[of] as number) / (r[base] as number)] : [],
  );
}

/**
 * `of` (default ours) / `base` in 202/s: the median of the rounds' ratios (or of the totals
 * without rounds).
 */
export function acceptRatio(res: AcceptResult, base: AcceptTarget, of: AcceptTarget = "ours"): number | undefined {
  const rs = roundRatios(res, base, of);
  if (rs.length > 0) return median(rs);
  const o = res[of];
  const b = res[base];
  return o && b && b.acceptedPerSec > 0 ? o.acceptedPerSec / b.acceptedPerSec : undefined;
}

/**
 * The ratio rows of the table, `[of, base]`: ours against each floor (the target is against the
 * stock pubAck baseline; pubAckCoalesced gives the same client setting on both sides), then the
 * gap's two parts, each with the same client setting: acceptCore / pubAckCoalesced and
 * ours / acceptCore.
 */
const RATIO_ROWS: readonly (readonly [AcceptTarget, AcceptTarget])[] = [
  ["ours", "plain"],
  ["ours", "pubAck"],
  ["ours", "pubAckCoalesced"],
  ["acceptCore", "pubAckCoalesced"],
  ["ours", "acceptCore"],
];

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
    const perRoundMs = Math.max(500, Math.round(o.acceptDurationMs / o.acceptRounds));
    const runs = new Map<AcceptTarget, ClosedLoopResult[]>(TARGETS.map((id) => [id, []]));
    const rounds: Partial<Record<AcceptTarget, number>>[] = [];
    ctx.log(
      `accept: ${TARGETS.join(", ")} take turns: ${o.acceptRounds} rounds of ${perRoundMs / 1000} s each, ${o.connections} connections, ${o.acceptWarmupMs / 1000} s warm-up first`,
    );
    for (let round = 0; round < o.acceptRounds; round++) {
      const row: Partial<Record<AcceptTarget, number>> = {};
      for (const id of TARGETS) {
        const target = await ctx.targets.get(id);
        if (id === "ours" && round === 0) {
          await ctx.closeFeed("ours");
          await target.prepareAccept?.();
        }
        // A full warm-up the first time; afterwards a short one for the new connections.
        const r = await runClosedLoop(target, {
          connections: o.connections,
          warmupMs: round === 0 ? o.acceptWarmupMs : 250,
          durationMs: perRoundMs,
        });
        runs.get(id)?.push(r);
        row[id] = r.acceptedPerSec;
      }
      rounds.push(row);
      const last = runs.get("ours")?.at(-1);
      const cpu = last
        ? Object.entries(last.cpuMsPer202)
            .map(([k, v]) => `${k} ${ms(v)}`)
            .join(", ")
        : "";
      ctx.log(
        `accept: round ${round + 1}: ${TARGETS.map((id) => `${id} ${int(row[id] ?? 0)}`).join(", ")} 202/s; ours/pubAck ${ratio(row.ours, row.pubAck)}, ours/pubAckCoalesced ${ratio(row.ours, row.pubAckCoalesced)}, ours/acceptCore ${ratio(row.ours, row.acceptCore)}; ours CPU ms/202: ${cpu}`,
      );
    }
    const out: AcceptResult = { rounds };
    for (const id of TARGETS) {
      const rs = runs.get(id);
      if (rs?.length) out[id] = mergeRounds(rs);
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
    for (const [of, base] of RATIO_ROWS) {
      const a = res[of];
      const b = res[base];
      if (!a || !b) continue;
      const rs = roundRatios(res, base, of);
      const range = rs.length > 1 ? ` (${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)})` : "";
      rows.push([
        `${of} / ${base}`,
        `${acceptRatio(res, base, of)?.toFixed(2) ?? "–"}×${range}`,
        ratio(a.latency.p50, b.latency.p50),
        ratio(a.latency.p99, b.latency.p99),
        "",
        ratio(httpCpu(of, a), httpCpu(base, b)),
        ratio(a.cpuMsPer202["nats-server"], b.cpuMsPer202["nats-server"]),
        "",
        ratio(serverCpu(a), serverCpu(b)),
        "",
      ]);
    }
    return [
      `## Accept — closed loop, ${o.connections} connections, ${o.acceptDurationMs / 1000} s per target in ${o.acceptRounds} rounds, after ${o.acceptWarmupMs / 1000} s warm-up`,
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
      "202/s and CPU are over all rounds; p50/p99 are the rounds' medians. Each 202/s ratio is the median of the rounds' ratios (range in brackets): the targets took turns, one round each.",
      "pubAckCoalesced = the pubAck baseline on a connection with coalesceWrites, as every service of ours (patches/README.md): ours / pubAckCoalesced compares with the same client setting on both sides; the target is against the stock pubAck.",
      "acceptCore = our accept code (validation, body hash, headers, create-if-absent publish) on bare Fastify, connected as the gateway: acceptCore / pubAckCoalesced is what our accept itself costs, ours / acceptCore what the gateway's layers around it cost (auth, roles, rate limit, security headers, input guards, request log, metrics, tracing, response schema).",
    ].join("\n");
  },
  checks: acceptChecks,
});

/** The accept target, with the same check on `acceptCore` (our accept code alone) as its floor. */
export function acceptChecks(res: AcceptResult): Check[] {
  const r = acceptRatio(res, "pubAck");
  const core = acceptRatio(res, "pubAck", "acceptCore");
  return [
    {
      name: "accept: ours / pubAck baseline (202/s)",
      threshold: "≥ 0.60×",
      ...ratioAtLeast(r, 0.6),
      floor: { target: "acceptCore", ...ratioAtLeast(core, 0.6) },
    },
  ];
}

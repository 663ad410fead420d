/** Command-line options of `pnpm bench` (see {@link USAGE}). */
import { parseArgs } from "node:util";
import type { CommandSpec } from "./targets.ts";

/** Everything a run is parameterised by; durations in milliseconds. */
export interface BenchOptions {
  quick: boolean;
  /** Where to write all results as JSON, if anywhere. */
  jsonFile: string | undefined;
  /** Scenario ids to run (all when empty). */
  only: string[];
  /** Accept: concurrent connections (32). */
  connections: number;
  /** Accept: unmeasured warm-up (2000; quick 1000). */
  acceptWarmupMs: number;
  /** Accept: measured run per target, over all rounds (10000; quick 3000). */
  acceptDurationMs: number;
  /**
   * Accept: rounds (10; quick 3). The targets take turns, one round each, so that a change in the
   * machine's speed during the run (shared hosts) moves every target alike; the ratio printed is
   * the median of the rounds' ratios.
   */
  acceptRounds: number;
  /** End-to-end: fixed rates, commands per second (200, 500, 1000). */
  rates: number[];
  /** End-to-end: measured run per rate and target (10000; quick 3000). */
  e2eDurationMs: number;
  /**
   * End-to-end and highest rate: unmeasured warm-up of each target, once, at
   * {@link BenchOptions.e2eWarmupRate} (6000; quick 4000). Long enough for V8 to have compiled
   * the hot paths of every process (a few hundred commands are not: the first measured phase
   * then pays the compilers' CPU and shows it as latency).
   */
  e2eWarmupMs: number;
  /** End-to-end: the warm-up's rate, commands per second (300). */
  e2eWarmupRate: number;
  /** A command without completion this long after its scheduled send is lost (10000; quick 5000). */
  timeoutMs: number;
  /** Open loop: HTTP connections of the client pool (128). */
  openConnections: number;
  /** Highest rate: at most this many measured steps per target (6; quick 3). */
  maxSteps: number;
  /** Highest rate: measured run per step (5000; quick 2000). */
  maxStepMs: number;
  /** Highest rate: never try above this many commands per second (8000). */
  maxRate: number;
  /** Highest rate: p99 bound, ms (250). */
  maxP99Ms: number;
  /** Highest rate: completed / sent at least (0.999). */
  minCompletion: number;
  /** Tenants (8); one SSE connection each. */
  tenants: number;
  command: CommandSpec;
  /** `LOG_LEVEL` of our services (info, as deployed). */
  logLevel: string;
  /** Run our services under `--cpu-prof` and print where they spend CPU. */
  profile: boolean;
  /** Archive: reports of the replayed tenant, i.e. how old its cursor is (100000; quick 20000). */
  archiveReports: number;
}

/** `pnpm bench --help`. */
export const USAGE = `pnpm bench [options]

  --quick                 CI-sized run (about 90 s instead of about 5 min)
  --only <list>           scenarios to run, comma-separated: accept, e2e, max, archive (default all)
  --json <file>           also write every result as JSON to <file>
  --connections <n>       accept: concurrent connections (32)
  --accept-seconds <s>    accept: measured seconds per target, all rounds together (10; quick 3)
  --accept-rounds <n>     accept: rounds in which the targets take turns (10; quick 3)
  --rates <list>          e2e: fixed rates in commands/s (200,500,1000)
  --e2e-seconds <s>       e2e: seconds per rate and target (10; quick 3)
  --warmup-seconds <s>    e2e and max: unmeasured warm-up per target at 300/s (6; quick 4)
  --timeout-seconds <s>   a command not completed this long after its send is lost (10; quick 5)
  --max-steps <n>         highest rate: measured steps per target (6; quick 3)
  --max-step-seconds <s>  highest rate: seconds per step (5; quick 2)
  --max-rate <n>          highest rate: never try above n commands/s (8000)
  --tenants <n>           tenants, one SSE connection each (8)
  --type <type>           command type (prep_pack.create)
  --params <json>         command params (a prep_pack.create example)
  --log-level <level>     LOG_LEVEL of our services (info)
  --profile               profile our services (node --cpu-prof) and print where they spend CPU
  --archive-reports <n>   archive: cursor age in reports for the replay (100000; quick 20000)
`;

const DEFAULT_PARAMS = { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] };

function positive(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * Parses `argv` (without node and the script).
 * @returns the options, or `"help"` for `--help`.
 * @throws on an unknown flag or a malformed value.
 */
export function parseBenchArgs(argv: string[]): BenchOptions | "help" {
  const { values: v } = parseArgs({
    args: argv.filter((a) => a !== "--"),
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
      json: { type: "string" },
      only: { type: "string" },
      connections: { type: "string" },
      "accept-seconds": { type: "string" },
      "accept-rounds": { type: "string" },
      rates: { type: "string" },
      "e2e-seconds": { type: "string" },
      "warmup-seconds": { type: "string" },
      "timeout-seconds": { type: "string" },
      "max-steps": { type: "string" },
      "max-step-seconds": { type: "string" },
      "max-rate": { type: "string" },
      tenants: { type: "string" },
      type: { type: "string" },
      params: { type: "string" },
      "log-level": { type: "string" },
      profile: { type: "boolean", default: false },
      "archive-reports": { type: "string" },
    },
  });
  if (v.help) return "help";
  const q = v.quick === true;
  const only = (v.only ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const rates = (v.rates ?? "200,500,1000").split(",").map((s) => positive("rates", s.trim(), 0));
  let params: Record<string, unknown> = DEFAULT_PARAMS;
  if (v.params !== undefined) {
    const p = JSON.parse(v.params) as unknown;
    if (!p || typeof p !== "object" || Array.isArray(p)) throw new Error("--params must be a JSON object");
    params = p as Record<string, unknown>;
  }
  return {
    quick: q,
    jsonFile: v.json,
    only,
    connections: Math.round(positive("connections", v.connections, 32)),
    acceptWarmupMs: q ? 1000 : 2000,
    acceptDurationMs: positive("accept-seconds", v["accept-seconds"], q ? 3 : 10) * 1000,
    acceptRounds: Math.round(positive("accept-rounds", v["accept-rounds"], q ? 3 : 10)),
    rates,
    e2eDurationMs: positive("e2e-seconds", v["e2e-seconds"], q ? 3 : 10) * 1000,
    e2eWarmupMs: positive("warmup-seconds", v["warmup-seconds"], q ? 4 : 6) * 1000,
    e2eWarmupRate: 300,
    timeoutMs: positive("timeout-seconds", v["timeout-seconds"], q ? 5 : 10) * 1000,
    openConnections: 128,
    maxSteps: Math.round(positive("max-steps", v["max-steps"], q ? 3 : 6)),
    maxStepMs: positive("max-step-seconds", v["max-step-seconds"], q ? 2 : 5) * 1000,
    maxRate: positive("max-rate", v["max-rate"], 8000),
    maxP99Ms: 250,
    minCompletion: 0.999,
    tenants: Math.round(positive("tenants", v.tenants, 8)),
    command: { type: v.type ?? "prep_pack.create", params },
    logLevel: v["log-level"] ?? "info",
    profile: v.profile === true,
    archiveReports: Math.round(positive("archive-reports", v["archive-reports"], q ? 20_000 : 100_000)),
  };
}

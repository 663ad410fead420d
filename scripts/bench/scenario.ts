/**
 * The scenario interface. A scenario is one measured question ("how many 202/s", "what latency
 * at 500/s"): it asks the context for the targets it needs, measures them, and renders its own
 * table and target checks. Scenarios are listed in `scenarios/index.ts`; adding one (e.g.
 * archiver throughput, replay from the archive) is a new module there and nothing else.
 */
import type { BenchOptions } from "./cli.ts";
import type { Cleanup } from "./procs.ts";
import type { SseFeed } from "./sse-feed.ts";
import type { TargetId, TargetPool } from "./targets.ts";

/** What a scenario can use. */
export interface BenchContext {
  options: BenchOptions;
  targets: TargetPool;
  /** A progress line on stderr. */
  log(line: string): void;
  /** The target's completion feed (one SSE connection per tenant), opened on first use. */
  feed(id: TargetId): Promise<SseFeed>;
  /**
   * Sends unmeasured commands at `e2eWarmupRate` for `e2eWarmupMs` through the target and its feed, once
   * per target and run (JIT, connection pools, per-tenant rows and hubs).
   */
  warmUp(id: TargetId): Promise<void>;
  /** Closes the target's feed (e.g. so that the accept scenario measures no SSE proxying). */
  closeFeed(id: TargetId): Promise<void>;
  /** Results of the scenarios that already ran in this run, by scenario id. */
  results: Record<string, unknown>;
  /** The run's scratch directory (removed at the end) and log directory (kept). */
  workDir: string;
  logDir: string;
  /** What a scenario starts itself (its own servers) is registered here, stopped on every exit path. */
  cleanup: Cleanup;
}

/** One target of the issue, evaluated on this run's figures. */
export interface Check {
  name: string;
  /** The measured value, formatted. */
  value: string;
  /** The threshold, formatted (e.g. `≥ 0.60×`). */
  threshold: string;
  /** Undefined when it could not be evaluated (a part did not run or nothing passed). */
  pass: boolean | undefined;
  /**
   * The same check applied to the run's reference for the least work the figure can cost
   * (`pipelineDurable` for the end-to-end targets, `acceptCore` for accept), so that every run
   * shows whether the threshold is within reach on this machine at all. Context, not a target.
   */
  floor?: { target: TargetId; value: string; pass: boolean | undefined };
}

/**
 * The figures of a ratio check: the ratio formatted (`0.64×`; `–` when it could not be measured)
 * and whether it reaches `min` (undefined when it could not be measured).
 */
export function ratioAtLeast(r: number | undefined, min: number): Pick<Check, "value" | "pass"> {
  return { value: r === undefined ? "–" : `${r.toFixed(2)}×`, pass: r === undefined ? undefined : r >= min };
}

/** A scenario typed by its result shape `R` (which goes into `--json` as is). */
export interface Scenario<R> {
  /** The `--only` name. */
  id: string;
  title: string;
  /**
   * Runs after every other selected scenario because it leaves a target changed (the accept
   * scenario stops our command-worker). Printing still follows the registry's order.
   */
  runLast?: boolean;
  run(ctx: BenchContext): Promise<R>;
  /** The scenario's section of the stdout report. */
  render(result: R, options: BenchOptions): string;
  checks(result: R, options: BenchOptions): Check[];
}

/** A scenario with its result type erased, as the registry holds it. */
export interface RegisteredScenario {
  id: string;
  title: string;
  runLast: boolean;
  /** Runs it; `render` and `checks` then read the result it stored. */
  run(ctx: BenchContext): Promise<{ result: unknown; render(): string; checks(): Check[] }>;
}

/** Wraps a typed scenario for the registry. */
export function registerScenario<R>(s: Scenario<R>): RegisteredScenario {
  return {
    id: s.id,
    title: s.title,
    runLast: s.runLast ?? false,
    async run(ctx) {
      const result = await s.run(ctx);
      return { result, render: () => s.render(result, ctx.options), checks: () => s.checks(result, ctx.options) };
    },
  };
}

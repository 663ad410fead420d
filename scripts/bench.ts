/**
 * `pnpm bench`: the project's own benchmark (docs/benchmarks.md). Starts baselines and the real
 * stack as separate processes on 127.0.0.1, measures accept throughput, end-to-end latency at
 * fixed rates and the highest sustainable rate, and prints each figure beside its baseline.
 * `pnpm bench --help` lists the options.
 */
import { parseBenchArgs, USAGE } from "./bench/cli.ts";
import { runBench } from "./bench/run.ts";

const options = parseBenchArgs(process.argv.slice(2));
if (options === "help") {
  process.stdout.write(USAGE);
  process.exit(0);
}
process.exit(await runBench(options));

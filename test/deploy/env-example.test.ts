/**
 * `.env.example` lists every environment variable: it is what `pnpm env:example` generates from
 * the zod configurations (so it is never stale), and every variable the compose files, `pnpm
 * start` and the CLI read is in it.
 */
import fs from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "@nexus/testkit";
import { describe, expect, it } from "vitest";
import { renderEnvExample } from "../../scripts/env-example.ts";

const read = (p: string) => fs.readFileSync(path.join(REPO_ROOT, p), "utf8");
const listed = () => new Set([...read(".env.example").matchAll(/^# ([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));

describe(".env.example", () => {
  it("is what pnpm env:example generates from the configurations (run it after changing a config)", () => {
    expect(read(".env.example")).toBe(renderEnvExample());
  });

  it("lists every variable of the zod configs, the compose files, pnpm start and the CLI", () => {
    const vars = listed();
    const wanted = new Set<string>();
    for (const f of [
      "packages/runtime/src/config.ts",
      "packages/http/src/auth.ts",
      "services/gateway/src/config.ts",
      "services/stream/src/config.ts",
      "services/command-worker/src/config.ts",
      "services/approval-worker/src/config.ts",
    ])
      for (const m of read(f).matchAll(/^\s*([A-Z][A-Z0-9_]+): (?:z\.|envBool|codeList|maxBytes|discard|csv)/gm))
        wanted.add(m[1] as string);
    for (const f of ["docker-compose.yml", "deploy/docker-compose.cluster.yml"])
      for (const m of read(f).matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)) wanted.add(m[1] as string);
    for (const f of ["scripts/start.ts", "packages/client/src/cli/run.ts"])
      for (const m of read(f).matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)) wanted.add(m[1] as string);
    expect(wanted.size).toBeGreaterThan(100);
    expect([...wanted].filter((v) => !vars.has(v))).toEqual([]);
    // Spot checks of what this issue added.
    for (const v of [
      "READY_GRACE_MS",
      "STREAM_MAX_BYTES_COMMANDS",
      "AUTO_REQUEUE_FAILURE_CODES",
      "CONSUMER_STALL_MS",
      "OTEL_EXPORTER_OTLP_ENDPOINT",
      "PROVISION_CONSUMER_START",
    ])
      expect(vars.has(v), v).toBe(true);
  });
});

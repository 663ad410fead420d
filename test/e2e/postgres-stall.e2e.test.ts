/**
 * A stalled Postgres (every postgres process SIGSTOPped: connections stay open, nothing
 * answers) must turn into `503 DEPENDENCY_UNAVAILABLE` within a bounded time — the pool-acquire
 * and statement/read timeouts (`PG_ACQUIRE_TIMEOUT_MS`, `PG_STATEMENT_TIMEOUT_MS`) — never a hang
 * and never a 500; commands (publish first) are still accepted; liveness stays 200; and once
 * Postgres resumes, everything works again. The stack runs on a Postgres of its own (stopping
 * the run's shared one would stall every other test), with the default timeouts; the measured
 * times are printed (`stall:` lines).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Tenant } from "@nexus/contracts";
import { createDb, migrateToLatest } from "@nexus/core";
import {
  natsForTest,
  type Running,
  type Stack,
  startEmbeddedPostgres,
  startStack,
  type TestNats,
  tenantHeaders,
  uniqueTenant,
  withDatabase,
} from "@nexus/testkit";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command } from "./fixture.ts";

let nats: TestNats;
let postgres: Running;
let dataDir: string;
let stack: Stack;
let stopped: number[] = [];

/** The postmaster's pid (first line of `postmaster.pid`). */
function postmasterPid(): number {
  return Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}
/** The postmaster's children: backends and background workers. */
function childrenOf(pid: number): number[] {
  return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}
/**
 * Stalls the server: the postmaster first (it forks no new backend from then on), then every
 * child. A backend that exited between the listing and its signal (ESRCH) is skipped: there is
 * nothing left of it to stop.
 */
const stall = () => {
  const main = postmasterPid();
  process.kill(main, "SIGSTOP");
  stopped = [main];
  for (const pid of childrenOf(main)) {
    try {
      process.kill(pid, "SIGSTOP");
      stopped.push(pid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
};
const resume = () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {}
  }
  stopped = [];
};

beforeAll(async () => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-pg-stall-"));
  fs.chmodSync(parent, 0o777);
  dataDir = path.join(parent, "data");
  postgres = await startEmbeddedPostgres({ dataDir });
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query("create database nexus");
  await admin.end();
  const url = withDatabase(postgres.url, "nexus");
  const db = createDb({ url, max: 1 });
  await migrateToLatest(db);
  await db.destroy();
  nats = await natsForTest({}, { auth: true });
  stack = await startStack({
    natsUrl: nats.url,
    databaseUrl: url,
    ...(nats.users ? { natsUsers: nats.users } : {}),
    // The defaults: PG_ACQUIRE_TIMEOUT_MS 2000, PG_STATEMENT_TIMEOUT_MS 5000 (read timeout 6 s),
    // READY_GRACE_MS 10000.
    env: { SSE_HEARTBEAT_MS: "500" },
  });
});
afterAll(async () => {
  resume();
  await stack?.close();
  await nats?.stop();
  await postgres?.stop();
});

async function call(method: string, p: string, t: Tenant, body?: unknown) {
  const started = performance.now();
  const res = await fetch(`${stack.gatewayUrl}${p}`, {
    method,
    headers: { ...tenantHeaders(t), ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, ms: Math.round(performance.now() - started) };
}

/** An ask to decide during the stall. */
async function openAsk(t: Tenant): Promise<string> {
  const cmd = command("external_share.prepare", {
    recipient: "partner@example.org",
    channel: "email",
    resource: { ref: "doc:1", title: "Plan" },
  });
  expect((await call("POST", "/sidecar/command", t, cmd)).status).toBe(202);
  const deadline = Date.now() + 20_000;
  const client = new pg.Client({ connectionString: withDatabase(postgres.url, "nexus") });
  await client.connect();
  try {
    while (Date.now() < deadline) {
      const r = await client.query("select ask_id from asks where command_id = $1", [cmd.command_id]);
      if (r.rows[0]) return r.rows[0].ask_id as string;
      await new Promise((res) => setTimeout(res, 100));
    }
  } finally {
    await client.end();
  }
  throw new Error("no ask");
}

describe("a stalled Postgres", () => {
  it("answers 503 DEPENDENCY_UNAVAILABLE within the timeouts (never a hang or a 500); commands are still accepted; it recovers", async () => {
    const t = uniqueTenant("stall");
    const askIds = await Promise.all([openAsk(t), openAsk(t), openAsk(t)]);
    expect((await call("PATCH", "/profile", t, { display_name: "Before" })).status).toBe(202);

    stall();
    const stalledAt = performance.now();
    // Three of each at once, as clients would send them.
    const [settings, decisions, commands] = await Promise.all([
      Promise.all([1, 2, 3].map((i) => call("PATCH", "/profile", t, { display_name: `During ${i}` }))),
      Promise.all(askIds.map((a) => call("POST", `/approvals/${a}/decide`, t, { decision: "approve" }))),
      Promise.all([1, 2, 3].map(() => call("POST", "/sidecar/command", t, command("echo.test", { x: 1 })))),
    ]);
    const health = await fetch(`${stack.gatewayUrl}/health`);
    const workerHealth = await fetch(`http://127.0.0.1:${stack.ports["command-worker"]}/health`);
    const total = Math.round(performance.now() - stalledAt);
    for (const [what, rs] of [
      ["PATCH /profile", settings],
      ["POST decide", decisions],
      ["POST /sidecar/command", commands],
    ] as const)
      console.log(`stall: ${what}: ${rs.map((r) => `${r.status} in ${r.ms} ms`).join(", ")}`);
    console.log(`stall: all nine answered within ${total} ms of the stall`);

    for (const r of [...settings, ...decisions]) {
      expect(r.status).toBe(503);
      expect(r.body.error).toMatchObject({ code: "DEPENDENCY_UNAVAILABLE", recoverable: true });
      // Bounded: pool acquire (2 s) + statement/read timeout (6 s) + margin on a loaded machine.
      expect(r.ms).toBeLessThan(15_000);
    }
    // The gateway touches no database to accept a command (publish first).
    for (const r of commands) expect(r.status).toBe(202);
    expect(health.status).toBe(200);
    expect(workerHealth.status).toBe(200);

    resume();
    // The pools drop the connections that timed out; within seconds the database answers again.
    const deadline = Date.now() + 30_000;
    let after = await call("PATCH", "/profile", t, { display_name: "After" });
    while (after.status !== 202 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      after = await call("PATCH", "/profile", t, { display_name: "After" });
    }
    expect(after.status).toBe(202);
    const d = await call("POST", `/approvals/${askIds[0]}/decide`, t, { decision: "approve" });
    expect(d.status).toBe(202);
  });
});

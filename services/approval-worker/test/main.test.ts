import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { freePort, REPO_ROOT, uniqueTenant, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, expect, test } from "vitest";
import { askRow, decideLikeGateway, type Harness, seedAsk, startHarness } from "./helpers.ts";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

test("the service process: /ready, executes an approved ask, exposes metrics, drains and exits 0 on SIGTERM", async () => {
  const port = await freePort();
  const out: string[] = [];
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", path.join(REPO_ROOT, "services/approval-worker/src/main.ts")],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        NATS_URL: h.nats.url,
        DATABASE_URL: h.tdb.url,
        HOST: "127.0.0.1",
        PORT: String(port),
        LOG_LEVEL: "info",
        SHUTDOWN_GRACE_MS: "2000",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.on("data", (b: Buffer) => out.push(b.toString()));
  child.stderr?.on("data", (b: Buffer) => out.push(b.toString()));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  try {
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200,
      20_000,
      "approval-worker /ready",
    ).catch((err) => {
      throw new Error(`${err.message}\n${out.join("")}`);
    });
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

    const s = await seedAsk(h.db, uniqueTenant());
    await decideLikeGateway(h, s, "approve");
    await waitFor(async () => (await askRow(h, s)).status === "done", 15_000, "done by the service process");

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/nexus_approval_transitions_total\{[^}]*event="ask:executed"[^}]*\} 1/);

    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(out.join("")).toContain("shutdown:done");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

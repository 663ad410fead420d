/**
 * `pnpm start` supervises its children: the script runs as it does for a developer (its own
 * nats-server and embedded Postgres in a data directory of the test's own, the four services),
 * and a service, nats-server and Postgres are each SIGKILLed; each comes back by itself, the
 * terminal says so, the stack serves again, and Ctrl-C (SIGINT) stops everything.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { alive, childPids, freePort, hasNatsBinary, REPO_ROOT, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { restartDelayMs } from "../../scripts/supervisor.ts";

/** The command line of a process (NUL-separated arguments joined by spaces). */
function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
}

describe("restartDelayMs", () => {
  it("doubles from 0.5 s up to 30 s", () => {
    expect([1, 2, 3, 4, 7, 8, 20].map(restartDelayMs)).toEqual([500, 1000, 2000, 4000, 30_000, 30_000, 30_000]);
  });
});

describe.skipIf(!hasNatsBinary() || process.platform !== "linux")("pnpm start supervises its children", () => {
  let start: ChildProcess;
  let out = "";
  let exited: Promise<number | null>;
  const ports: Record<string, number> = {};
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-start-"));

  /** The supervisor's child whose command line contains `needle`. */
  const childOf = (needle: string): number | undefined =>
    childPids(start.pid as number).find((p) => cmdline(p).includes(needle));
  const ready = async (port: number) => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;

  beforeAll(async () => {
    for (const k of [
      "GATEWAY_PORT",
      "STREAM_PORT",
      "COMMAND_WORKER_PORT",
      "APPROVAL_WORKER_PORT",
      "NATS_PORT",
      "PG_PORT",
    ])
      ports[k] = await freePort();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && k !== "NATS_URL" && k !== "DATABASE_URL") env[k] = v;
    start = spawn(process.execPath, [path.join(REPO_ROOT, "scripts/start.ts")], {
      cwd: REPO_ROOT,
      env: {
        ...env,
        ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
        NEXUS_DATA_DIR: dataDir,
        NEXUS_START_NO_BUILD: "1",
        LOG_PRETTY: "false",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    start.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
    });
    start.stderr?.on("data", (c: Buffer) => {
      out += c.toString();
    });
    exited = new Promise((r) => start.once("exit", (code) => r(code)));
    await waitFor(() => ready(ports.GATEWAY_PORT as number), 150_000, "the stack to come up").catch((err) => {
      throw new Error(`${(err as Error).message}\n${out.slice(-4000)}`);
    });
  }, 180_000);

  afterAll(async () => {
    if (start && start.exitCode === null) {
      start.kill("SIGKILL");
      for (const p of childPids(start.pid as number)) process.kill(p, "SIGKILL");
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("restarts a killed service, a killed nats-server and a killed Postgres, then stops cleanly on Ctrl-C", async () => {
    // A service.
    const worker = childOf("services/command-worker/src/main.ts");
    expect(worker).toBeDefined();
    process.kill(worker as number, "SIGKILL");
    await waitFor(
      async () => {
        const now = childOf("services/command-worker/src/main.ts");
        return now !== undefined && now !== worker && (await ready(ports.COMMAND_WORKER_PORT as number));
      },
      30_000,
      "the command-worker back",
    );
    expect(out).toMatch(/command-worker was killed by SIGKILL; restarting it in 0\.5 s/);
    await waitFor(() => /command-worker is ready again/.test(out), 10_000, "the supervisor saw it ready");

    // nats-server: the services reconnect by themselves.
    const nats = childOf("nats-server");
    expect(nats).toBeDefined();
    process.kill(nats as number, "SIGKILL");
    await waitFor(
      async () => {
        const now = childOf("nats-server");
        return now !== undefined && now !== nats && (await ready(ports.GATEWAY_PORT as number));
      },
      30_000,
      "nats-server back and the gateway ready",
    );
    expect(out).toMatch(/nats-server was killed by SIGKILL; restarting it/);

    // Postgres: the postmaster and its backends, as in a crash.
    const postmaster = childOf(" -D ");
    expect(postmaster).toBeDefined();
    for (const p of [postmaster as number, ...childPids(postmaster as number)]) process.kill(p, "SIGKILL");
    await waitFor(
      async () => {
        const now = childOf(" -D ");
        if (now === undefined || now === postmaster) return false;
        // A read that needs Postgres answers again (404: no photo yet).
        const r = await fetch(`http://127.0.0.1:${ports.GATEWAY_PORT}/profile/photo`, {
          headers: { "x-org-id": "acme", "x-project-id": "nexus" },
        });
        return r.status === 404;
      },
      60_000,
      "Postgres back",
    );
    expect(out).toMatch(/postgres is not running; restarting it/);
    await waitFor(() => /postgres restarted/.test(out), 10_000, "the supervisor saw Postgres back");

    // Ctrl-C: everything stops, and the script exits 0.
    const pids = childPids(start.pid as number);
    start.kill("SIGINT");
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 40_000))]);
    expect(code).toBe(0);
    await waitFor(() => pids.every((p) => !alive(p)), 10_000, "every child gone");
    expect(out).toMatch(/stopped/);
  }, 240_000);
});

import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream } from "@nats-io/jetstream";
import { connectNats } from "@nexus/messaging";
import { createLogger } from "@nexus/runtime";
import {
  createTestDatabase,
  listeningPort,
  natsForTest,
  openSse,
  reportPublisher,
  StopWaiting,
  type TestDatabase,
  type TestNats,
  tenantHeaders,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { publishReport, reportIds } from "./helpers.ts";

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/main.ts");
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

let nats: TestNats;
let tdb: TestDatabase;

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
});

afterAll(async () => {
  await tdb?.drop();
  await nats?.stop();
});

describe("main.ts (the service as a process)", () => {
  it("starts from the environment, streams, and on SIGTERM ends connections and exits 0", async () => {
    let output = "";
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", MAIN], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        NATS_URL: nats.url,
        DATABASE_URL: tdb.url,
        HOST: "127.0.0.1",
        PORT: "0",
        LOG_LEVEL: "warn",
        SHUTDOWN_GRACE_MS: "3000",
      },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    child.stdout?.on("data", (d) => {
      output += d;
    });
    child.stderr?.on("data", (d) => {
      output += d;
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let port = 0;
    try {
      port = await listeningPort(child).catch((err: Error) => {
        throw new Error(`${err.message}: ${output}`);
      });
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new StopWaiting(`exited: ${output}`);
          return (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;
        },
        30_000,
        "stream /ready",
      );
      const t = uniqueTenant("main");
      const c = await openSse(`http://127.0.0.1:${port}/agent/reports/stream`, { headers: tenantHeaders(t) });
      await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");
      const nc = await connectNats({
        url: nats.url,
        name: "main-test",
        logger: createLogger({ service: "t", level: "silent" }),
      });
      const id = await publishReport(reportPublisher(jetstream(nc)), t, "via-process");
      await c.waitFor(() => reportIds(c).includes(id), 5000, "report");
      await nc.close();

      const started = Date.now();
      child.kill("SIGTERM");
      await waitFor(() => c.closed, 5000, "connection ended by shutdown");
      const code = await Promise.race([exited, new Promise<"hung">((r) => setTimeout(() => r("hung"), 8000))]);
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
      // the client keeps the id of the last report it received
      expect(c.events.filter((e) => e.id !== undefined).at(-1)?.id).toBe(String(id));
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});

import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import { ConsumerMissing, connectNats, provisionTopology } from "@nexus/messaging";
import {
  createTestDatabase,
  listeningPort,
  natsForTest,
  REPO_ROOT,
  TEST_TOPOLOGY,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, expect, test } from "vitest";
import { appendEntry, nextEntry, seedAsk } from "./helpers.ts";

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

test("the service process: /ready follows its consumer, applies a decision, exposes metrics, drains and exits 0 on SIGTERM", async () => {
  const out: string[] = [];
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO_ROOT, "services/approval-worker/src/main.ts")], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      NATS_URL: nats.url,
      DATABASE_URL: tdb.url,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      SHUTDOWN_GRACE_MS: "2000",
      READY_GRACE_MS: "1000",
    },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  child.stdout?.on("data", (b: Buffer) => out.push(b.toString()));
  child.stderr?.on("data", (b: Buffer) => out.push(b.toString()));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const logger = pino({ level: "silent" });
  const nc = await connectNats({ url: nats.url, name: "main-test", logger });
  let port = 0;
  const ready = async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status;
  try {
    port = await listeningPort(child, 20_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${out.join("")}`);
    });
    await waitFor(async () => (await ready()) === 200, 20_000, "approval-worker /ready").catch((err) => {
      throw new Error(`${err.message}\n${out.join("")}`);
    });
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t);
    await appendEntry(jetstream(nc), nextEntry(row, null, "alice"));
    await waitFor(
      async () =>
        (await tdb.db.selectFrom("asks").select("status").where("ask_id", "=", row.ask_id).executeTakeFirst())
          ?.status === "decided",
      15_000,
      "decided by the service process",
    );
    // The job is acked (and counted) just after its row changed: wait for the count.
    let metrics = "";
    await waitFor(
      async () => {
        metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /nexus_jobs_total\{[^}]*outcome="success"[^}]*\} 1/.test(metrics);
      },
      5000,
      "the job counted",
    );
    expect(metrics).toMatch(/nexus_jobs_total\{[^}]*worker="approval-worker"/);

    // Its durable consumer deleted: /ready fails within seconds (not silently 200) with an error
    // log line, and the worker never re-creates it. Provisioning does not silently re-create it
    // from the start of the stream either (the stream holds an entry): it refuses until told
    // where to start; then the worker is ready again.
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(STREAMS.approvals, CONSUMERS.approvalWorker);
    await waitFor(async () => (await ready()) === 503, 15_000, "/ready 503 without its consumer");
    const body = await (await fetch(`http://127.0.0.1:${port}/ready`)).json();
    expect(body.checks).toMatchObject({ consumer: false, nats: true, postgres: true });
    const unhealthy = out
      .join("")
      .split("\n")
      .filter((l) => l.includes('"consumer:unhealthy"'))
      .map((l) => JSON.parse(l));
    expect(unhealthy[0]).toMatchObject({ level: 50, reason: "consumer_missing", worker: "approval-worker" });
    await expect(provisionTopology(jsm, TEST_TOPOLOGY, logger)).rejects.toThrow(ConsumerMissing);
    await expect(jsm.consumers.info(STREAMS.approvals, CONSUMERS.approvalWorker)).rejects.toThrow();
    await provisionTopology(jsm, { ...TEST_TOPOLOGY, missingConsumerStart: "new" }, logger);
    expect((await jsm.consumers.info(STREAMS.approvals, CONSUMERS.approvalWorker)).config.deliver_policy).toBe("new");
    await waitFor(async () => (await ready()) === 200, 15_000, "/ready 200 again");

    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(out.join("")).toContain("shutdown:done");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    await nc.close();
  }
});

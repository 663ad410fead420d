// The `pipelineDurable` baseline's two processes (scripts/bench/baselines/worker.ts with
// DATABASE_URL, and archiver.ts) on real NATS and Postgres: every command recorded once (a
// duplicate delivery included), its three reports published, every report archived once.
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createTestDatabase, natsForTest, REPO_ROOT, type TestDatabase, type TestNats, waitFor } from "@nexus/testkit";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ReadyProcess, spawnReadyProcess } from "../../scripts/bench/procs.ts";

const BASELINES = path.join(REPO_ROOT, "scripts/bench/baselines");
const id = randomUUID().slice(0, 8);
let nats: TestNats;
let nc: NatsConnection;
let tdb: TestDatabase;
let client: pg.Client;
const procs: ReadyProcess[] = [];
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-durable-baseline-"));

beforeAll(async () => {
  nats = await natsForTest();
  nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: `DC_${id}`, subjects: [`d${id}.cmd.>`] });
  await jsm.streams.add({ name: `DR_${id}`, subjects: [`d${id}.rep.>`] });
  for (const stream of [`DC_${id}`, `DR_${id}`])
    await jsm.consumers.add(stream, {
      durable_name: "w",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    });
  tdb = await createTestDatabase();
  const common = { NATS_URL: nats.url, DATABASE_URL: tdb.url, CONSUMER: "w" };
  procs.push(
    await spawnReadyProcess({
      name: "durable-worker",
      file: path.join(BASELINES, "worker.ts"),
      env: { ...common, STREAM: `DC_${id}`, REPORT_PREFIX: `d${id}.rep`, REPORTS: "3" },
      logDir,
    }),
    await spawnReadyProcess({
      name: "durable-archiver",
      file: path.join(BASELINES, "archiver.ts"),
      env: { ...common, STREAM: `DR_${id}`, LINGER_MS: "50" },
      logDir,
    }),
  );
  client = new pg.Client({ connectionString: tdb.url });
  await client.connect();
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await client?.end();
  await nc?.close();
  await nats?.stop();
  await tdb?.drop();
  fs.rmSync(logDir, { recursive: true, force: true });
});

describe("pipelineDurable baseline", () => {
  it("records each command once, publishes its 3 reports and archives every report once", async () => {
    const js = jetstream(nc);
    const ids = Array.from({ length: 5 }, () => randomUUID());
    for (const c of ids) await js.publish(`d${id}.cmd.o1.p1`, JSON.stringify({ command_id: c, type: "echo.test" }));
    // The same command again (a second delivery): recorded once, its reports published again.
    await js.publish(`d${id}.cmd.o1.p1`, JSON.stringify({ command_id: ids[0], type: "echo.test" }));

    const count = async (table: string) =>
      Number((await client.query(`select count(*)::int as n from ${table}`)).rows[0].n);
    await waitFor(async () => (await count("bench_reports")) === 18, 15_000, "18 archived reports");
    const commands = await client.query("select org_id, project_id, command_id, type, status from bench_commands");
    expect(commands.rows.map((r) => r.command_id).sort()).toEqual([...ids].sort());
    expect(commands.rows.every((r) => r.org_id === "o1" && r.project_id === "p1" && r.status === "done")).toBe(true);
    const reports = await client.query<{ type: string; org_id: string; n: number }>(
      "select type, org_id, count(*)::int as n from bench_reports group by 1, 2 order by 1",
    );
    expect(reports.rows.map((r) => [r.type, r.org_id, r.n])).toEqual([
      ["command.accepted", "o1", 6],
      ["command.completed", "o1", 6],
      ["command.started", "o1", 6],
    ]);
    // Every report acked after its commit: nothing left for the archiver's consumer.
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => (await jsm.consumers.info(`DR_${id}`, "w")).num_ack_pending === 0,
      5000,
      "every report acked",
    );
    expect((await jsm.consumers.info(`DR_${id}`, "w")).num_pending).toBe(0);
  });
});

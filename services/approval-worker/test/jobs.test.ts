/**
 * The approval-worker on real NATS and Postgres (in-process `runWorker`): register entries
 * applied exactly once and in order whatever the delivery order (invariant 3), rejects cancel
 * (invariant 2), durable CASE_ACTION notifications, poison, and the expiry sweeper racing
 * decisions and other sweepers through the register.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { AskEventMessage, DeadLetter, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { lastMessageReader } from "@nexus/messaging";
import {
  startWorkerRig,
  type TestDatabase,
  tenantReports,
  uniqueTenant,
  type WorkerRig,
  waitFor,
} from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExpirySweeper } from "../src/expiry.ts";
import { askEventSpec } from "../src/jobs.ts";
import { appendEntry, nextEntry, notifications, seedAsk } from "./helpers.ts";

let tdb: TestDatabase;
let nc: NatsConnection;
let rig: WorkerRig;
const logger = pino({ level: "silent" });
const js = () => jetstream(nc);

beforeAll(async () => {
  rig = await startWorkerRig("approval-worker-test");
  ({ tdb, nc } = rig);
  await rig.run({
    spec: askEventSpec({ db: tdb.db, js: js(), now: () => new Date(), publishTimeoutMs: 5000 }),
    retry: { baseMs: 20, maxMs: 50 },
  });
});
afterAll(async () => {
  await rig?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ask = (id: string) => tdb.db.selectFrom("asks").selectAll().where("ask_id", "=", id).executeTakeFirstOrThrow();
const command = (id: string) =>
  tdb.db.selectFrom("commands").selectAll().where("command_id", "=", id).executeTakeFirstOrThrow();
const askReports = async (t: Tenant, askId: string) =>
  (await tenantReports(js(), t)).filter((r) => r.causality.ask_id === askId && r.report.type !== "ask.created");
const dispatched = async (t: Tenant, commandId: string) =>
  lastMessageReader(await jetstreamManager(nc))(STREAMS.commands, subjects.approvedAction(t, commandId));

describe("register entries", () => {
  it("an approval is applied once: the ask is decided, ask.decided and APPROVED are published, the action is dispatched", async () => {
    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t);
    await appendEntry(js(), nextEntry(row, null, "alice"));
    await waitFor(async () => (await ask(row.ask_id)).status === "decided", 10_000, "decided");
    await waitFor(async () => (await dispatched(t, row.command_id)) !== null, 5000, "dispatch");
    expect(await ask(row.ask_id)).toMatchObject({
      decision: "approve",
      decided_by: "alice",
      register_seq: expect.any(String),
    });
    expect((await askReports(t, row.ask_id)).map((r) => r.report.type)).toEqual(["ask.decided"]);
    const n = await notifications(js(), t);
    expect(n).toMatchObject([
      { category: "CASE_ACTION", status_code: "APPROVED", executor_id: "alice", ask_id: row.ask_id },
    ]);
    const d = JSON.parse((await dispatched(t, row.command_id))?.body ?? "{}");
    expect(d).toMatchObject({
      kind: "approved_action",
      ask_id: row.ask_id,
      approved_by: ["alice"],
      correlation_id: "c-alice",
    });
  });

  it("entries delivered out of order end in the newest entry's state (N-of-M: 2 approvals, the second first)", async () => {
    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t, 2);
    const first = nextEntry(row, null, "alice");
    const second = nextEntry(row, first, "bob");
    expect(second.outcome).toBe("approved");
    // The final entry reaches the worker before the first one.
    await appendEntry(js(), { ...second });
    await waitFor(async () => (await ask(row.ask_id)).status === "decided", 10_000, "decided");
    await appendEntry(js(), first);
    await sleep(500);
    const a = await ask(row.ask_id);
    expect(a.status).toBe("decided");
    expect(a.decisions.map((d) => d.principal)).toEqual(["alice", "bob"]);
    const history = await tdb.db
      .selectFrom("action_history")
      .select(["event", "executor_id"])
      .where("ask_id", "=", row.ask_id)
      .orderBy("id")
      .execute();
    expect(history).toEqual([
      { event: "decided", executor_id: "alice" },
      { event: "decided", executor_id: "bob" },
    ]);
  });

  it("an entry delivered again (a new message, same content) changes nothing and restates the same reports", async () => {
    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t);
    const e = nextEntry(row, null, "carol", "reject");
    await appendEntry(js(), e);
    await appendEntry(js(), e, randomUUID());
    await waitFor(async () => (await ask(row.ask_id)).status === "cancelled", 10_000, "cancelled");
    await sleep(800);
    expect((await askReports(t, row.ask_id)).map((r) => r.report.type)).toEqual(["ask.decided", "ask.cancelled"]);
    expect((await command(row.command_id)).status).toBe("cancelled");
    expect((await notifications(js(), t)).map((n) => n.status_code)).toEqual(["REJECTED"]);
    expect(await dispatched(t, row.command_id)).toBeNull();
  });

  it("an entry for an ask that does not exist (or another tenant's) is dead-lettered, not applied", async () => {
    const t = uniqueTenant();
    const other = uniqueTenant();
    const row = await seedAsk(tdb.db, other);
    const e = { ...nextEntry(row, null, "mallory"), tenant: t };
    await appendEntry(js(), e);
    let dl: DeadLetter | undefined;
    await waitFor(
      async () => {
        const m = await (await jetstreamManager(nc)).streams.getMessage(STREAMS.dlq, {
          last_by_subj: subjects.dlq(t, "approval"),
        });
        dl = m ? DeadLetter.parse(m.json()) : undefined;
        return dl !== undefined;
      },
      10_000,
      "dead letter",
    );
    expect(dl).toMatchObject({ reason: "poison", code: "ASK_NOT_FOUND" });
    expect((await ask(row.ask_id)).status).toBe("open");
  });
});

describe("expiry through the register", () => {
  const sweeper = (now: () => Date) =>
    jetstreamManager(nc).then((jsm) =>
      createExpirySweeper({ db: tdb.db, js: js(), readLast: lastMessageReader(jsm), logger, now, intervalMs: 60_000 }),
    );

  it("three sweepers racing write one expiry entry; the ask expires once, the command is cancelled, EXPIRED once", async () => {
    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t);
    const later = () => new Date(row.expires_at.getTime() + 1000);
    const sweepers = await Promise.all([sweeper(later), sweeper(later), sweeper(later)]);
    await Promise.all(sweepers.map((s) => s.tick()));
    await waitFor(async () => (await ask(row.ask_id)).status === "expired", 10_000, "expired");
    await Promise.all(sweepers.map((s) => s.stop()));
    await sleep(500);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAMS.approvals, { subjects_filter: subjects.approval(t, row.ask_id) });
    expect(info.state.subjects?.[subjects.approval(t, row.ask_id)]).toBe(1);
    expect((await askReports(t, row.ask_id)).map((r) => r.report.type)).toEqual(["ask.expired"]);
    expect((await command(row.command_id)).status).toBe("cancelled");
    expect((await notifications(js(), t)).map((n) => [n.status_code, n.executor_id])).toEqual([["EXPIRED", "system"]]);
  });

  it("a decision stored before the sweeper's write wins: the due ask is not expired, and executes", async () => {
    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t);
    await appendEntry(js(), nextEntry(row, null, "dave"));
    const s = await sweeper(() => new Date(row.expires_at.getTime() + 1000));
    expect(await s.tick()).toBe(0);
    await s.stop();
    await waitFor(async () => (await ask(row.ask_id)).status === "decided", 10_000, "decided");
    const last = await lastMessageReader(await jetstreamManager(nc))(
      STREAMS.approvals,
      subjects.approval(t, row.ask_id),
    );
    expect(AskEventMessage.parse(JSON.parse(last?.body ?? "{}")).kind).toBe("decision");
  });

  it("partial N-of-M approvals do not stop expiry: the expiry entry carries them and the ask expires", async () => {
    const t = uniqueTenant();
    const row = await seedAsk(tdb.db, t, 2);
    await appendEntry(js(), nextEntry(row, null, "erin"));
    await waitFor(async () => (await ask(row.ask_id)).decisions.length === 1, 10_000, "one approval applied");
    const s = await sweeper(() => new Date(row.expires_at.getTime() + 1000));
    expect(await s.tick()).toBe(1);
    await s.stop();
    await waitFor(async () => (await ask(row.ask_id)).status === "expired", 10_000, "expired");
    expect((await ask(row.ask_id)).decisions.map((d) => d.principal)).toEqual(["erin"]);
  });
});

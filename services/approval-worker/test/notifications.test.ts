/**
 * CASE_ACTION notifications are durable (docs/contract.md "Notifications for other systems"): a
 * back-end system's durable consumer on NEXUS_NOTIFY that was down — its process gone, and
 * NATS restarted meanwhile — catches up on every notification it missed, in order, and gets
 * none it had acknowledged again.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type CaseActionNotification, STREAMS, subjects } from "@nexus/contracts";
import { connectNats } from "@nexus/messaging";
import {
  startWorkerRig,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
  type WorkerRig,
  waitFor,
} from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { askEventSpec } from "../src/jobs.ts";
import { appendEntry, nextEntry, seedAsk } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;
let nc: NatsConnection;
let rig: WorkerRig;
const logger = pino({ level: "silent" });

beforeAll(async () => {
  rig = await startWorkerRig("approval-worker-test");
  ({ nats, tdb, nc } = rig);
  await rig.run({
    spec: askEventSpec({ db: tdb.db, js: jetstream(nc), now: () => new Date(), publishTimeoutMs: 5000 }),
    retry: { baseMs: 20, maxMs: 50 },
  });
});
afterAll(async () => {
  await rig?.close();
});

/** A downstream system's connection: pulls up to `n` notifications from its durable consumer and acks them. */
async function downstreamPull(url: string, durable: string, n: number): Promise<CaseActionNotification[]> {
  const conn = await connectNats({ url, name: "downstream", logger });
  try {
    const c = await jetstream(conn).consumers.get(STREAMS.notify, durable);
    const out: CaseActionNotification[] = [];
    const it = await c.fetch({ max_messages: n, expires: 1500 });
    for await (const m of it) {
      out.push(m.json<CaseActionNotification>());
      await m.ackAck();
    }
    return out;
  } finally {
    await conn.close();
  }
}

it("a durable consumer that was down catches up on every CASE_ACTION notification it missed, across a NATS restart", async () => {
  const t = uniqueTenant("notify");
  const durable = `downstream-${t.org_id}`;
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(STREAMS.notify, {
    durable_name: durable,
    filter_subject: subjects.caseAction(t),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  });

  // Up: sees the first decision.
  const a = await seedAsk(tdb.db, t);
  await appendEntry(jetstream(nc), nextEntry(a, null, "alice"));
  await waitFor(async () => (await jsm.consumers.info(STREAMS.notify, durable)).num_pending >= 1, 10_000, "first");
  expect((await downstreamPull(nats.url, durable, 10)).map((n) => [n.ask_id, n.status_code])).toEqual([
    [a.ask_id, "APPROVED"],
  ]);

  // Down: two more decisions happen, then NATS itself restarts.
  const b = await seedAsk(tdb.db, t);
  const c = await seedAsk(tdb.db, t);
  await appendEntry(jetstream(nc), nextEntry(b, null, "bob", "reject"));
  await appendEntry(jetstream(nc), nextEntry(c, null, "carol"));
  await waitFor(async () => (await jsm.consumers.info(STREAMS.notify, durable)).num_pending >= 2, 10_000, "missed two");
  if (nats.own) {
    await nats.restart();
    await waitFor(async () => nc.flush().then(() => true), 10_000, "reconnected");
  }

  // Back: exactly the two it missed, in order; nothing it had acknowledged again. (Pulled until
  // both came: right after a restart JetStream may answer a first short pull with nothing.)
  const caughtUp: CaseActionNotification[] = [];
  await waitFor(
    async () => {
      caughtUp.push(...(await downstreamPull(nats.url, durable, 10)));
      return caughtUp.length >= 2;
    },
    15_000,
    "the two missed notifications",
  );
  expect(caughtUp.map((n) => [n.ask_id, n.status_code, n.executor_id])).toEqual([
    [b.ask_id, "REJECTED", "bob"],
    [c.ask_id, "APPROVED", "carol"],
  ]);
  expect(caughtUp.every((n) => n.type === "NOTIFICATION" && n.category === "CASE_ACTION")).toBe(true);
  expect(await downstreamPull(nats.url, durable, 10)).toEqual([]);
});

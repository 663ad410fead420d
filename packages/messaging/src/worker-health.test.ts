/**
 * The worker's consumer health beyond existence: pulls that stall (messages pending on the
 * consumer, free slots here, nothing delivered for `stallMs`) make it unhealthy — `/ready`
 * then fails — and it is healthy again once deliveries resume; the consumer's pending counts
 * are read for metrics.
 */
import { randomUUID } from "node:crypto";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { natsForTest, type TestNats, waitFor } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "./connect.ts";
import { createWorkerEvents, runWorker, type WorkerSpec } from "./worker.ts";

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const logger = pino({ level: "silent" });

beforeAll(async () => {
  nats = await natsForTest();
  nc = await connectNats({ url: nats.url, name: "worker-health-test", logger });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

const spec = (stream: string, handled: string[]): WorkerSpec<{ id: string }> => ({
  name: "stall-worker",
  stream,
  consumer: "w",
  dlqSource: "cmd",
  parse: (m: JsMsg) => ({ ok: true, job: m.json<{ id: string }>(), tenant: { org_id: "o", project_id: "p" }, log: {} }),
  handle: async (job) => {
    handled.push(job.id);
  },
});

describe("consumer health", () => {
  it("pulls that stall (pending messages, nothing delivered) make the worker unhealthy; it recovers when deliveries resume", async () => {
    const id = randomUUID().slice(0, 8);
    const stream = `S_${id}`;
    await jsm.streams.add({ name: stream, subjects: [`s.${id}.>`] });
    // At most 2 unacked messages: another client holding two blocks every delivery.
    await jsm.consumers.add(stream, {
      durable_name: "w",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 60_000 * 1_000_000,
      max_ack_pending: 2,
    });
    for (const n of [1, 2]) await js.publish(`s.${id}.job`, JSON.stringify({ id: `held-${n}` }));
    const holder = await js.consumers.get(stream, "w");
    const held: JsMsg[] = [];
    for await (const m of await holder.fetch({ max_messages: 2, expires: 2000 })) held.push(m);
    expect(held).toHaveLength(2);

    const events = createWorkerEvents();
    const reasons: string[] = [];
    events.on("consumer:unhealthy", (e) => reasons.push(e.reason));
    const handled: string[] = [];
    const w = await runWorker({ js, logger, events, probeMs: 200, stallMs: 1500, spec: spec(stream, handled) });
    // Taken before the publishes: the stall cannot start before the first of them is pending,
    // however long the publishes take.
    const stalledFrom = Date.now();
    for (const n of [1, 2, 3]) await js.publish(`s.${id}.job`, JSON.stringify({ id: `new-${n}` }));
    await waitFor(() => !w.health().ok, 5000, "unhealthy: pull_stalled");
    expect(Date.now() - stalledFrom).toBeGreaterThanOrEqual(1000);
    expect(w.health().reason).toBe("pull_stalled");
    expect(reasons).toEqual(["pull_stalled"]);
    expect(w.consumerStats()).toMatchObject({ pending: 3, ackPending: 2 });
    expect(handled).toEqual([]);

    for (const m of held) m.ack();
    await waitFor(() => handled.length === 3, 5000, "deliveries resume");
    await waitFor(() => w.health().ok, 3000, "healthy again");
    await waitFor(() => w.consumerStats()?.pending === 0, 3000, "nothing pending");
    await w.stop(500);
  });

  it("an idle consumer (nothing pending) is healthy however long nothing is delivered", async () => {
    const id = randomUUID().slice(0, 8);
    const stream = `I_${id}`;
    await jsm.streams.add({ name: stream, subjects: [`i.${id}.>`] });
    await jsm.consumers.add(stream, { durable_name: "w", ack_policy: AckPolicy.Explicit });
    const w = await runWorker({ js, logger, probeMs: 100, stallMs: 1000, spec: spec(stream, []) });
    await new Promise((r) => setTimeout(r, 1800));
    expect(w.health().ok).toBe(true);
    expect(w.consumerStats()).toMatchObject({ pending: 0, ackPending: 0 });
    await w.stop(500);
  });
});

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
import { DeadLetter, STREAMS } from "@nexus/contracts";
import { natsForTest, type TestNats, waitFor } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "./connect.ts";
import { createWorkerEvents, type DeadLetterRequest, runWorker, type WorkerSpec } from "./worker.ts";

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const logger = pino({ level: "silent" });
const NS = 1_000_000;

beforeAll(async () => {
  nats = await natsForTest();
  nc = await connectNats({ url: nats.url, name: "worker-test", logger });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

/** A stream and durable consumer of the test's own. */
async function workStream(ackWaitMs = 30_000): Promise<{ stream: string; consumer: string; subject: string }> {
  const id = randomUUID().slice(0, 8);
  const stream = `T_${id}`;
  await jsm.streams.add({ name: stream, subjects: [`t.${id}.>`] });
  await jsm.consumers.add(stream, {
    durable_name: "w",
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ackWaitMs * NS,
    max_deliver: -1,
  });
  return { stream, consumer: "w", subject: `t.${id}.job` };
}

interface Job {
  id: string;
  poison?: boolean;
}

function spec(
  s: { stream: string; consumer: string },
  handle: (job: Job, attempt: number) => Promise<void | DeadLetterRequest>,
  onExhausted?: WorkerSpec<Job>["onExhausted"],
): WorkerSpec<Job> {
  return {
    name: "test-worker",
    stream: s.stream,
    consumer: s.consumer,
    dlqSource: "cmd",
    parse(msg: JsMsg) {
      const j = msg.json<Job>();
      if (j.poison) return { ok: false, error: "poisoned on purpose", tenant: { org_id: "o", project_id: "p" } };
      return { ok: true, job: j, tenant: { org_id: "o", project_id: "p" }, log: { job: j.id } };
    },
    handle: (job, ctx) => handle(job, ctx.attempt),
    ...(onExhausted ? { onExhausted } : {}),
  };
}

/** Dead letters of the run whose payload names `id`. */
async function deadLetters(id: string): Promise<DeadLetter[]> {
  const c = await js.consumers.get(STREAMS.dlq, { filter_subjects: "nexus.dlq.o.p.cmd" });
  const out: DeadLetter[] = [];
  try {
    let pending = (await c.info(true)).num_pending;
    while (pending > 0) {
      const it = await c.fetch({ max_messages: pending, expires: 1000 });
      let read = 0;
      for await (const m of it) {
        read++;
        pending = m.info.pending;
        const d = DeadLetter.parse(m.json());
        if (d.payload.includes(id)) out.push(d);
      }
      if (read === 0) break;
    }
  } finally {
    await c.delete().catch(() => {});
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("runWorker", () => {
  it("a job that throws is retried per the schedule, then succeeds once; events say so", async () => {
    const s = await workStream();
    const attempts: number[] = [];
    const at: number[] = [];
    const events = createWorkerEvents();
    const seen: string[] = [];
    for (const e of ["job:start", "job:error", "job:success", "job:failed"] as const) events.on(e, () => seen.push(e));
    const w = await runWorker({
      js,
      logger,
      events,
      spec: spec(s, async (_job, attempt) => {
        attempts.push(attempt);
        at.push(Date.now());
        if (attempt < 3) throw new Error(`transient ${attempt}`);
      }),
      maxAttempts: 5,
      retry: { baseMs: 200, maxMs: 400 },
    });
    await js.publish(s.subject, JSON.stringify({ id: "a" }));
    await waitFor(() => seen.includes("job:success"), 10_000, "success");
    await sleep(300);
    await w.stop(1000);
    expect(attempts).toEqual([1, 2, 3]);
    expect(seen).toEqual(["job:start", "job:error", "job:start", "job:error", "job:start", "job:success"]);
    // full jitter, but never below baseMs / 2
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(90);
  });

  it("a job whose attempts are spent is failed once: onExhausted records it, one dead letter with its code, never delivered again", async () => {
    const s = await workStream();
    const id = randomUUID();
    let calls = 0;
    let exhausted = 0;
    const w = await runWorker({
      js,
      logger,
      spec: spec(
        s,
        async () => {
          calls++;
          throw new Error("always");
        },
        async () => {
          exhausted++;
          return "LLM_TIMEOUT";
        },
      ),
      maxAttempts: 3,
      retry: { baseMs: 20, maxMs: 40 },
    });
    await js.publish(s.subject, JSON.stringify({ id }));
    await waitFor(() => exhausted === 1, 10_000, "exhausted");
    await sleep(800);
    await w.stop(1000);
    expect(calls).toBe(3);
    expect(exhausted).toBe(1);
    const dl = await deadLetters(id);
    expect(dl).toHaveLength(1);
    expect(dl[0]).toMatchObject({
      reason: "retries_exhausted",
      code: "LLM_TIMEOUT",
      deliveries: 3,
      error: "Error: always",
    });
    expect((await jsm.consumers.info(s.stream, s.consumer)).num_ack_pending).toBe(0);
  });

  it("poison is dead-lettered at once and never handled; a handler may ask for dead-lettering too", async () => {
    const s = await workStream();
    const poison = randomUUID();
    const refused = randomUUID();
    let handled = 0;
    const w = await runWorker({
      js,
      logger,
      spec: spec(s, async (job) => {
        handled++;
        if (job.id === refused) return { reason: "idempotency_conflict", code: "IDEMPOTENCY_CONFLICT", error: "taken" };
      }),
    });
    await js.publish(s.subject, JSON.stringify({ id: poison, poison: true }));
    await js.publish(s.subject, JSON.stringify({ id: refused }));
    await waitFor(async () => (await deadLetters(refused)).length === 1, 10_000, "refused dead-lettered");
    await w.stop(1000);
    expect(handled).toBe(1);
    expect(await deadLetters(poison)).toMatchObject([
      { reason: "poison", code: "POISON_MESSAGE", error: "poisoned on purpose" },
    ]);
    expect(await deadLetters(refused)).toMatchObject([
      { reason: "idempotency_conflict", code: "IDEMPOTENCY_CONFLICT" },
    ]);
  });

  it("in-progress acks: a job three times longer than the ack wait is delivered once", async () => {
    const s = await workStream(1000);
    let calls = 0;
    const w = await runWorker({
      js,
      logger,
      ackWaitMs: 1000,
      spec: spec(s, async () => {
        calls++;
        await sleep(3000);
      }),
    });
    await js.publish(s.subject, JSON.stringify({ id: "long" }));
    await sleep(4500);
    await w.stop(1000);
    expect(calls).toBe(1);
  });

  it("a crashed worker's job is redelivered to another within about one ack wait", async () => {
    const s = await workStream(2000);
    const crashedNc = await connectNats({ url: nats.url, name: "doomed", logger });
    let startedAt = 0;
    const doomed = await runWorker({
      js: jetstream(crashedNc),
      logger,
      ackWaitMs: 2000,
      spec: spec(s, async () => {
        startedAt = Date.now();
        await sleep(60_000);
      }),
    });
    await js.publish(s.subject, JSON.stringify({ id: "crash" }));
    await waitFor(() => startedAt > 0, 5000, "the doomed worker took the job");
    await crashedNc.close(); // the process dies: no nak, no more in-progress acks
    let redeliveredAt = 0;
    const survivor = await runWorker({
      js,
      logger,
      spec: spec(s, async (_job, attempt) => {
        if (attempt === 2) redeliveredAt = Date.now();
      }),
    });
    await waitFor(() => redeliveredAt > 0, 10_000, "redelivery");
    await survivor.stop(1000);
    void doomed;
    expect(redeliveredAt - startedAt).toBeLessThan(2000 + 1500);
  });

  it("a deleted consumer makes the worker unhealthy within the probe interval, and healthy once it is back", async () => {
    const s = await workStream();
    const events = createWorkerEvents();
    const reasons: string[] = [];
    events.on("consumer:unhealthy", (e) => reasons.push(e.reason));
    const w = await runWorker({ js, logger, events, probeMs: 200, spec: spec(s, async () => {}) });
    expect(w.health().ok).toBe(true);
    await jsm.consumers.delete(s.stream, s.consumer);
    await waitFor(() => !w.health().ok, 3000, "unhealthy");
    expect(w.health().reason).toBe("consumer_missing");
    expect(reasons).toContain("consumer_missing");
    await jsm.consumers.add(s.stream, { durable_name: s.consumer, ack_policy: AckPolicy.Explicit });
    await waitFor(() => w.health().ok, 5000, "healthy again");
    await w.stop(1000);
    expect(w.health()).toMatchObject({ ok: false, reason: "stopped" });
  });

  it("stop(): in-flight jobs finish within the grace; past it they are aborted and nak'ed for another replica", async () => {
    const s = await workStream();
    let finished = 0;
    let aborted = 0;
    const w = await runWorker({
      js,
      logger,
      spec: {
        ...spec(s, async () => {}),
        async handle(job, ctx) {
          const ms = job.id === "slow" ? 10_000 : 200;
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, ms);
            ctx.signal.addEventListener("abort", () => {
              clearTimeout(t);
              aborted++;
              reject(new Error("aborted"));
            });
          });
          finished++;
        },
      },
    });
    await js.publish(s.subject, JSON.stringify({ id: "quick" }));
    await js.publish(s.subject, JSON.stringify({ id: "slow" }));
    await waitFor(() => w.inFlight() === 2, 5000, "both in flight");
    const t0 = Date.now();
    await w.stop(600);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(finished).toBe(1);
    expect(aborted).toBe(1);
    let redelivered = "";
    const next = await runWorker({
      js,
      logger,
      spec: spec(s, async (job) => {
        redelivered = job.id;
      }),
    });
    await waitFor(() => redelivered === "slow", 5000, "the aborted job goes to another replica at once");
    await next.stop(500);
  });
});

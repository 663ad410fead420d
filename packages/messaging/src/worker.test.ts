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
  handle: (job: Job, attempt: number) => Promise<DeadLetterRequest | undefined> | Promise<void>,
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
    let empty = 0;
    while (pending > 0) {
      const it = await c.fetch({ max_messages: pending, expires: 1000 });
      let read = 0;
      for await (const m of it) {
        read++;
        pending = m.info.pending;
        const d = DeadLetter.parse(m.json());
        if (d.payload.includes(id)) out.push(d);
      }
      // A slow server may answer a pull with nothing while messages are pending: ask again
      // (a few times) rather than return a short list.
      if (read === 0 && ++empty >= 5) break;
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

  it("in-progress acks: a job 2.5 times longer than the ack wait is delivered once", async () => {
    // A 2 s ack wait: the worker sends in-progress acks every third of it, so only a stall of
    // over 1.3 s of its event loop (not a slow machine's usual hiccups) could let it lapse.
    const s = await workStream(2000);
    let calls = 0;
    const w = await runWorker({
      js,
      logger,
      ackWaitMs: 2000,
      spec: spec(s, async () => {
        calls++;
        await sleep(5000);
      }),
    });
    await js.publish(s.subject, JSON.stringify({ id: "long" }));
    await sleep(6500);
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
    const crashedAt = Date.now();
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
    // One ack wait after its last in-progress ack (sent at the latest as it died), plus the
    // survivor's start and pull on a loaded machine.
    expect(redeliveredAt - crashedAt).toBeLessThan(2000 + 2500);
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

  it("a dependency outage spends no attempts: the job waits (nak 0.5–1.5 s) and runs once it is back; down/up reported once", async () => {
    const s = await workStream();
    const events = createWorkerEvents();
    const seen: string[] = [];
    events.on("dependency:down", (e) => seen.push(`down:${e.dependency}`));
    events.on("dependency:up", (e) => seen.push(`up:${e.dependency}`));
    events.on("job:failed", () => seen.push("failed"));
    let calls = 0;
    let doneAt = 0;
    const t0 = Date.now();
    const w = await runWorker({
      js,
      logger,
      events,
      maxAttempts: 2,
      spec: spec(s, async () => {
        calls++;
        // Postgres is "down" for the first 2.5 s: the pool's connection error.
        if (Date.now() - t0 < 2500)
          throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
        doneAt = Date.now();
      }),
    });
    await js.publish(s.subject, JSON.stringify({ id: "outage" }));
    await waitFor(() => doneAt > 0, 10_000, "done after the outage");
    await w.stop(1000);
    // More tries than maxAttempts, none dead-lettered, and done soon after the dependency's
    // return: an outage nak waits at most 1.5 s (500 ms + up to 1 s of jitter), plus the
    // redelivery and the handler on a loaded machine (a generous 1.5 s).
    expect(calls).toBeGreaterThan(2);
    expect(seen).toEqual(["down:postgres", "up:postgres"]);
    expect(doneAt - (t0 + 2500)).toBeLessThan(3000);
  });

  it.runIf(process.env.NATS_URL === undefined)(
    "a frozen server is noticed (unhealthy: stalled) within seconds; the worker pulls again once it answers",
    async (ctx) => {
      const own = await natsForTest({}, {});
      if (!own.own) ctx.skip("needs a nats-server binary of the test's own");
      const nc2 = await connectNats({ url: own.url, name: "worker-freeze", logger });
      const js2 = jetstream(nc2);
      const jsm2 = await jetstreamManager(nc2);
      const id = randomUUID().slice(0, 8);
      await jsm2.streams.add({ name: `F_${id}`, subjects: [`f.${id}.>`] });
      await jsm2.consumers.add(`F_${id}`, { durable_name: "w", ack_policy: AckPolicy.Explicit });
      const events = createWorkerEvents();
      const reasons: string[] = [];
      events.on("consumer:unhealthy", (e) => reasons.push(e.reason));
      let handled = 0;
      const w = await runWorker({
        js: js2,
        nc: nc2,
        logger,
        events,
        heartbeatMs: 500,
        spec: spec({ stream: `F_${id}`, consumer: "w" }, async () => {
          handled++;
        }),
      });
      try {
        own.freeze();
        await waitFor(() => !w.health().ok, 4000, "stall noticed");
        expect(["stalled", "heartbeats_missed"]).toContain(w.health().reason);
        own.thaw();
        await js2.publish(`f.${id}.job`, JSON.stringify({ id: "after" }));
        const t = Date.now();
        await waitFor(() => handled === 1, 10_000, "handled after the thaw");
        // Before the pull's 5 s expiry (what it must not wait for), with room for a loaded machine.
        expect(Date.now() - t).toBeLessThan(4500);
        expect(w.health().ok).toBe(true);
        expect(reasons.length).toBeGreaterThan(0);
      } finally {
        own.thaw();
        await w.stop(500);
        await nc2.close();
        await own.stop();
      }
    },
  );

  it.runIf(process.env.NATS_URL === undefined)(
    "after a server SIGKILL and restart the worker handles new jobs within seconds of the server being back",
    async (ctx) => {
      const own = await natsForTest({}, {});
      if (!own.own) ctx.skip("needs a nats-server binary of the test's own");
      const nc2 = await connectNats({ url: own.url, name: "worker-restart", logger });
      const js2 = jetstream(nc2);
      const jsm2 = await jetstreamManager(nc2);
      const id = randomUUID().slice(0, 8);
      await jsm2.streams.add({ name: `R_${id}`, subjects: [`r.${id}.>`] });
      await jsm2.consumers.add(`R_${id}`, { durable_name: "w", ack_policy: AckPolicy.Explicit });
      let handled = 0;
      const w = await runWorker({
        js: js2,
        nc: nc2,
        logger,
        spec: spec({ stream: `R_${id}`, consumer: "w" }, async () => {
          handled++;
        }),
      });
      try {
        await own.stop("SIGKILL");
        await sleep(1000);
        await own.start();
        await waitFor(
          async () => {
            await js2.publish(`r.${id}.job`, JSON.stringify({ id: "after" }), { timeout: 1000 });
            return true;
          },
          10_000,
          "publish after the restart",
        );
        // The connection is back (the publish went through on it): the worker must pull again at
        // once, not after its stale pull's 5 s expiry; room for a loaded machine below that.
        const published = Date.now();
        await waitFor(() => handled >= 1, 10_000, "handled after the restart");
        expect(Date.now() - published).toBeLessThan(4500);
      } finally {
        await w.stop(500);
        await nc2.close();
        await own.stop();
      }
    },
  );

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

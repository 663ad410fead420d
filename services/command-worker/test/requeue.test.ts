/**
 * Dead-letter requeues on real NATS and Postgres: a failed command's dead letter sent back to
 * the command-worker runs the command again — once per dead letter however often the requeue
 * is published or delivered (invariant 3) — and the triage by failure code requeues by itself
 * after a delay, a bounded number of times, then raises an alarm.
 */
import { randomUUID } from "node:crypto";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type CommandMessage, HEADERS, type RequeueMessage, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { commandBodyHash, commandMsgId } from "@nexus/core";
import { type CommandHandler, defineHandler, HANDLERS, HandlerError } from "@nexus/handlers";
import {
  buildHeaders,
  type DeadLetterTriage,
  listDeadLetters,
  publishRequeue,
  requeueTarget,
  type StoredDeadLetter,
  type Worker,
  type WorkerEventMap,
} from "@nexus/messaging";
import { startWorkerRig, type TestDatabase, uniqueTenant, type WorkerRig, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commandWorkerSpec } from "../src/jobs.ts";
import { testDeps } from "./helpers.ts";

let tdb: TestDatabase;
let nc: NatsConnection;
let worker: Worker;
let rig: WorkerRig;
const js = () => jetstream(nc);
const failed: WorkerEventMap["job:failed"][0][] = [];

/** Per command id, what the handler does on its n-th call (1-based); calls are counted. */
const behaviours = new Map<string, (n: number) => void>();
const calls = new Map<string, number>();
const scripted = defineHandler("prep_pack.create", async (_params, ctx) => {
  const n = (calls.get(ctx.commandId) ?? 0) + 1;
  calls.set(ctx.commandId, n);
  behaviours.get(ctx.commandId)?.(n);
  return { checklist: ["ok"], summary: `call ${n}` };
});
const handlers: readonly CommandHandler[] = [
  ...HANDLERS.filter((h) => h.type !== "prep_pack.create"),
  scripted as unknown as CommandHandler,
];

/** RETRIES_EXHAUSTED requeues itself (twice at most, after 300 ms, 600 ms); HANDLER_FAILED is held. */
const TRIAGE: DeadLetterTriage = {
  requeue: new Set(["RETRIES_EXHAUSTED"]),
  hold: new Set(["HANDLER_FAILED"]),
  alarm: new Set(["POISON_MESSAGE"]),
  requeueDelayMs: 300,
  requeueMax: 2,
};
const MAX_ATTEMPTS = 2;

beforeAll(async () => {
  rig = await startWorkerRig("command-worker-requeue-test");
  ({ tdb, nc } = rig);
  worker = await rig.run({
    spec: commandWorkerSpec(testDeps(tdb.db, js(), handlers)),
    maxAttempts: MAX_ATTEMPTS,
    retry: { baseMs: 10, maxMs: 20 },
    triage: TRIAGE,
  });
  worker.events.on("job:failed", (e) => failed.push(e));
});
afterAll(async () => {
  await rig?.close();
});

const PREP = { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] };

function commandOf(t: Tenant): CommandMessage {
  const params = PREP;
  return {
    v: 1,
    kind: "command",
    tenant: t,
    command_id: randomUUID(),
    type: "prep_pack.create",
    context: {},
    params,
    correlation_id: `c-${randomUUID().slice(0, 8)}`,
    accepted_at: new Date().toISOString(),
    principal: "user-1",
    body_hash: commandBodyHash({ type: "prep_pack.create", context: {}, params }),
  };
}

async function publishCommand(m: CommandMessage): Promise<void> {
  const msgId = commandMsgId(m.tenant, m.command_id);
  await js().publish(subjects.command(m.tenant, m.command_id), JSON.stringify(m), {
    msgID: msgId,
    headers: buildHeaders({ tenant: m.tenant, msgId, correlationId: m.correlation_id }),
    expect: { lastSubjectSequence: 0 },
  });
}

/** The tenant's reports with their `Nats-Msg-Id`, oldest first. */
async function rawReports(t: Tenant): Promise<{ type: string; commandId?: string; msgId: string }[]> {
  const c = await js().consumers.get(STREAMS.reports, {
    filter_subjects: subjects.report(t),
    deliver_policy: DeliverPolicy.All,
  });
  const out: { type: string; commandId?: string; msgId: string }[] = [];
  try {
    let pending = (await c.info(true)).num_pending;
    while (pending > 0) {
      const it = await c.fetch({ max_messages: Math.min(pending, 256), expires: 2000 });
      for await (const m of it) {
        pending = m.info.pending;
        const body = m.json<{ report: { type: string }; causality: { command_id?: string } }>();
        out.push({
          type: body.report.type,
          ...(body.causality.command_id ? { commandId: body.causality.command_id } : {}),
          msgId: m.headers?.get(HEADERS.msgId) ?? "",
        });
      }
    }
  } finally {
    await c.delete().catch(() => {});
  }
  return out;
}

const typesOf = async (t: Tenant, id: string) =>
  (await rawReports(t)).filter((r) => r.commandId === id).map((r) => r.type);
const letters = async (t: Tenant): Promise<StoredDeadLetter[]> =>
  (await listDeadLetters(js(), { tenant: t, limit: 100 })).items;
const row = (id: string) =>
  tdb.db.selectFrom("commands").selectAll().where("command_id", "=", id).executeTakeFirstOrThrow();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Requeues a dead letter as the admin API does (`msgId` suffix: publish it again as a new message). */
async function requeue(s: StoredDeadLetter, o: { again?: string } = {}) {
  const target = requeueTarget(s.letter);
  if (!o.again) {
    const out = await publishRequeue(js(), {
      dlqSeq: s.seq,
      target,
      requestedBy: "admin-1",
      now: new Date(),
      generation: 0,
      correlationId: "c-requeue",
    });
    expect(out.kind).toBe("stored");
    return;
  }
  // The same requeue again, past the duplicate window (a new message id).
  const message: RequeueMessage = {
    v: 1,
    kind: "requeue",
    tenant: target.tenant,
    dlq_seq: s.seq,
    subject: target.subject,
    payload: target.payload,
    stream_seq: target.streamSeq,
    requested_by: "admin-1",
    requested_at: new Date().toISOString(),
    generation: 0,
  };
  const msgId = `${target.tenant.org_id}.${target.tenant.project_id}.again-${o.again}`;
  await js().publish(subjects.requeue("cmd", target.tenant, target.id), JSON.stringify(message), {
    msgID: msgId,
    headers: buildHeaders({ tenant: target.tenant, msgId, correlationId: "c-again" }),
  });
}

describe("requeue of a dead letter", () => {
  it("a failed command runs again once per dead letter: the same requeue published three times (two past the duplicate window, in parallel) runs it once", async () => {
    const t = uniqueTenant("rq");
    const m = commandOf(t);
    // Fails with a held code until the requeue: HANDLER_FAILED (retryable) on every attempt.
    let healed = false;
    behaviours.set(m.command_id, () => {
      if (!healed) throw new HandlerError("HANDLER_FAILED", "the calendar is down", true);
    });
    await publishCommand(m);
    await waitFor(async () => (await letters(t)).length === 1, 10_000, "the dead letter");
    const [dl] = await letters(t);
    expect(dl?.letter).toMatchObject({ reason: "retries_exhausted", code: "HANDLER_FAILED", disposition: "hold" });
    expect((await row(m.command_id)).status).toBe("failed");
    expect(calls.get(m.command_id)).toBe(MAX_ATTEMPTS);

    healed = true;
    await Promise.all([requeue(dl!), requeue(dl!, { again: "1" }), requeue(dl!, { again: "2" })]);
    await waitFor(async () => (await typesOf(t, m.command_id)).includes("command.completed"), 10_000, "completed");
    await sleep(500); // any second run would have happened by now
    expect(calls.get(m.command_id)).toBe(MAX_ATTEMPTS + 1);
    const r = await row(m.command_id);
    expect(r).toMatchObject({ status: "done", requeues: 1, requeued_from: String(dl!.seq) });
    const reports = (await rawReports(t)).filter((x) => x.commandId === m.command_id);
    expect(reports.map((x) => x.type)).toEqual([
      "command.accepted",
      "command.started",
      "command.failed",
      "command.started",
      "command.completed",
    ]);
    // The requeued run states new facts: its ids carry the run suffix, so none is dropped as a duplicate.
    expect(reports.slice(3).map((x) => x.msgId.split(":")[1])).toEqual(["started.r1", "completed.r1"]);

    // Requeued again later (the dead letter was not removed): nothing runs.
    await requeue(dl!, { again: "3" });
    await sleep(500);
    expect(calls.get(m.command_id)).toBe(MAX_ATTEMPTS + 1);
  });

  it("an older dead letter requeued after a newer one ran only restates; the command does not run again", async () => {
    const t = uniqueTenant("rq");
    const m = commandOf(t);
    let healed = false;
    behaviours.set(m.command_id, () => {
      if (!healed) throw new HandlerError("HANDLER_FAILED", "down", true);
    });
    await publishCommand(m);
    await waitFor(async () => (await letters(t)).length === 1, 10_000, "first dead letter");
    const [first] = await letters(t);
    await requeue(first!); // still failing: a second dead letter, of the requeue
    await waitFor(async () => (await letters(t)).length === 2, 10_000, "second dead letter");
    const second = (await letters(t)).find((x) => x.seq !== first!.seq)!;
    expect(second.letter.subject).toBe(subjects.requeue("cmd", t, m.command_id));
    expect(requeueTarget(second.letter).subject).toBe(subjects.command(t, m.command_id)); // unwrapped

    healed = true;
    await requeue(second);
    await waitFor(async () => (await row(m.command_id)).status === "done", 10_000, "done");
    const runs = calls.get(m.command_id);
    await requeue(first!, { again: "old" });
    await sleep(600);
    expect(calls.get(m.command_id)).toBe(runs);
    expect((await row(m.command_id)).requeues).toBe(2);
  });

  it("triage: RETRIES_EXHAUSTED requeues itself after the delay and completes; the run reports carry .r1 ids", async () => {
    const t = uniqueTenant("rq");
    const m = commandOf(t);
    // Plain errors (RETRIES_EXHAUSTED) on the first run's attempts, then fine.
    behaviours.set(m.command_id, (n) => {
      if (n <= MAX_ATTEMPTS) throw new Error("transient");
    });
    const started = Date.now();
    await publishCommand(m);
    await waitFor(async () => (await row(m.command_id)).status === "done", 15_000, "done after the requeue");
    expect(Date.now() - started).toBeGreaterThanOrEqual(TRIAGE.requeueDelayMs);
    const [dl] = await letters(t);
    expect(dl?.letter).toMatchObject({ code: "RETRIES_EXHAUSTED", disposition: "requeue" });
    expect(await typesOf(t, m.command_id)).toEqual([
      "command.accepted",
      "command.started",
      "command.failed",
      "command.started",
      "command.completed",
    ]);
    const ids = (await rawReports(t)).filter((x) => x.commandId === m.command_id).map((x) => x.msgId.split(":")[1]);
    expect(ids).toEqual(["accepted", "started", "failed", "started.r1", "completed.r1"]);
    expect(calls.get(m.command_id)).toBe(MAX_ATTEMPTS + 1);
    expect((await row(m.command_id)).requeues).toBe(1);
  });

  it("triage: automatic requeues stop after AUTO_REQUEUE_MAX; the next failure is an alarm and nothing runs again", async () => {
    const t = uniqueTenant("rq");
    const m = commandOf(t);
    behaviours.set(m.command_id, () => {
      throw new Error("always");
    });
    await publishCommand(m);
    const runs = MAX_ATTEMPTS * (1 + TRIAGE.requeueMax);
    await waitFor(async () => (await letters(t)).length === 1 + TRIAGE.requeueMax, 20_000, "all dead letters");
    await waitFor(() => calls.get(m.command_id) === runs, 5000, "every run");
    const all = (await letters(t)).sort((a, b) => a.seq - b.seq);
    expect(all.map((x) => x.letter.disposition)).toEqual(["requeue", "requeue", "alarm"]);
    expect(failed.filter((e) => e.context.command_id === m.command_id).map((e) => e.disposition)).toEqual([
      "requeue",
      "requeue",
      "alarm",
    ]);
    await sleep(1500);
    expect(calls.get(m.command_id)).toBe(runs);
    expect((await row(m.command_id)).status).toBe("failed");
  });

  it("a requeue of a command that never got a row (it was poison) handles it as new, once", async () => {
    const t = uniqueTenant("rq");
    const m = commandOf(t);
    const letter = {
      reason: "poison" as const,
      code: "POISON_MESSAGE",
      error: "was poison",
      stream: STREAMS.commands,
      subject: subjects.command(t, m.command_id),
      stream_seq: 1,
      deliveries: 1,
      payload: JSON.stringify(m),
      ts: new Date().toISOString(),
    };
    const s = { seq: 10_000_001, dlqSubject: subjects.dlq(t, "cmd"), tenant: t, source: "cmd" as const, letter };
    await Promise.all([requeue(s), requeue(s, { again: "p1" })]);
    await waitFor(async () => (await row(m.command_id).catch(() => null))?.status === "done", 10_000, "done");
    await sleep(500);
    expect(calls.get(m.command_id)).toBe(1);
  });

  it("requeue is refused for what cannot run again: a reused command id and a failed approved action", () => {
    const t = uniqueTenant("rq");
    const base = {
      error: "x",
      stream: STREAMS.commands,
      stream_seq: 1,
      deliveries: 1,
      payload: "{}",
      ts: new Date().toISOString(),
    };
    expect(() =>
      requeueTarget({ ...base, reason: "idempotency_conflict", subject: subjects.command(t, "c1") }),
    ).toThrow(/first command stands/);
    expect(() =>
      requeueTarget({ ...base, reason: "retries_exhausted", subject: subjects.approvedAction(t, "c1") }),
    ).toThrow(/approved action/);
    expect(() => requeueTarget({ ...base, reason: "poison", subject: "nexus.cmd._unknown" })).toThrow(/cannot be read/);
  });
});

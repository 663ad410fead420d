/**
 * The command-worker's jobs on real NATS and Postgres, run by `runWorker` in-process with
 * handlers that fail on demand: retries, exhaustion, permanent failures, redelivery (invariant
 * 3), the risk policy (YELLOW, RED held once — invariant 2), approved actions ("approve exactly
 * what runs"), poison.
 */
import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type CommandMessage, DeadLetter, type ReportEvent, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import {
  applyAskEvent,
  commandBodyHash,
  commandMsgId,
  planDecision,
  policyFor,
  receiveCommands,
  updateSettings,
} from "@nexus/core";
import { type CommandHandler, defineHandler, HANDLERS, type HandlerContext, HandlerError } from "@nexus/handlers";
import { buildHeaders, publishEffects } from "@nexus/messaging";
import {
  reportTypesOf,
  startWorkerRig,
  type TestDatabase,
  tenantReports,
  uniqueTenant,
  type WorkerRig,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commandWorkerSpec, groupCommitWrites } from "../src/jobs.ts";
import { testDeps } from "./helpers.ts";

let tdb: TestDatabase;
let nc: NatsConnection;
let rig: WorkerRig;
const js = () => jetstream(nc);

/** What the test handler of a command does on its n-th call (1-based). */
const behaviours = new Map<string, (n: number, ctx: HandlerContext) => void | Promise<void>>();
const calls = new Map<string, number>();
/** Command ids completed by an update of a running row (not recorded as done at once). */
const completedByUpdate = new Set<string>();

/** `prep_pack.create` replaced by a handler whose behaviour each test sets per command id. */
const scripted = defineHandler("prep_pack.create", async (_params, ctx) => {
  const n = (calls.get(ctx.commandId) ?? 0) + 1;
  calls.set(ctx.commandId, n);
  await behaviours.get(ctx.commandId)?.(n, ctx);
  return { checklist: ["ok"], summary: `call ${n}` };
});
const handlers: readonly CommandHandler[] = [
  ...HANDLERS.filter((h) => h.type !== "prep_pack.create"),
  scripted as unknown as CommandHandler,
];

beforeAll(async () => {
  rig = await startWorkerRig("command-worker-test");
  ({ tdb, nc } = rig);
  const writes = groupCommitWrites(tdb.db);
  await rig.run({
    spec: commandWorkerSpec(
      testDeps(tdb.db, js(), handlers, {
        writes: {
          ...writes,
          complete: (item) => {
            completedByUpdate.add(item.commandId);
            return writes.complete(item);
          },
        },
      }),
    ),
    maxAttempts: 4,
    retry: { baseMs: 20, maxMs: 60 },
  });
});
afterAll(async () => {
  await rig?.close();
});

const PREP = { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] };
/** The reports of a command that ran and completed, in order. */
const RAN = ["command.accepted", "command.started", "command.completed"];

function commandOf(t: Tenant, type: string, params: Record<string, unknown>): CommandMessage {
  return {
    v: 1,
    kind: "command",
    tenant: t,
    command_id: randomUUID(),
    type,
    context: {},
    params,
    correlation_id: `c-${randomUUID().slice(0, 8)}`,
    accepted_at: new Date().toISOString(),
    principal: "user-1",
    body_hash: commandBodyHash({ type, context: {}, params }),
  };
}

/** Publishes a command as the gateway does (`msgId` overrides the dedupe id, to redeliver it as new). */
async function publishCommand(m: CommandMessage, msgId = commandMsgId(m.tenant, m.command_id)): Promise<void> {
  await js().publish(subjects.command(m.tenant, m.command_id), JSON.stringify(m), {
    msgID: msgId,
    headers: buildHeaders({ tenant: m.tenant, msgId, correlationId: m.correlation_id }),
  });
}

const reports = (t: Tenant): Promise<ReportEvent[]> => tenantReports(js(), t);
async function until(t: Tenant, what: string, check: (rs: ReportEvent[]) => boolean, ms = 10_000) {
  await waitFor(async () => check(await reports(t)), ms, what);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const row = (id: string) =>
  tdb.db.selectFrom("commands").selectAll().where("command_id", "=", id).executeTakeFirstOrThrow();

async function deadLetters(t: Tenant): Promise<DeadLetter[]> {
  const c = await js().consumers.get(STREAMS.dlq, { filter_subjects: subjects.dlq(t, "cmd") });
  const out: DeadLetter[] = [];
  try {
    let pending = (await c.info(true)).num_pending;
    while (pending > 0) {
      const it = await c.fetch({ max_messages: pending, expires: 1000 });
      for await (const m of it) {
        pending = m.info.pending;
        out.push(DeadLetter.parse(m.json()));
      }
    }
  } finally {
    await c.delete().catch(() => {});
  }
  return out;
}

async function setCompliance(t: Tenant, values: Record<string, unknown>) {
  await tdb.db.transaction().execute((tx) =>
    updateSettings(tx, t, "compliance", (cur) => ({ ...cur, ...values }), {
      now: new Date(),
      correlationId: "c-set",
    }),
  );
}

/** Approves an ask the way the approval-worker applies the gateway's register entry. */
async function approve(t: Tenant, askId: string, principal = "approver-1") {
  const ask = await tdb.db.selectFrom("asks").selectAll().where("ask_id", "=", askId).executeTakeFirstOrThrow();
  const plan = planDecision(ask, null, {
    principal,
    decision: "approve",
    correlationId: "c-approve",
    now: new Date(),
    allowSelfApproval: false,
  });
  if (plan.kind !== "append") throw new Error(plan.kind);
  const applied = await tdb.db.transaction().execute((tx) => applyAskEvent(tx, plan.entry, 1, new Date()));
  if (applied.kind === "unknown") throw new Error("unknown ask");
  await publishEffects(js(), applied.effects); // includes the dispatch of the approved action
  void t;
}

async function askOf(t: Tenant, commandId: string): Promise<string> {
  let askId = "";
  await until(t, "ask.created", (rs) => {
    askId =
      rs.find((x) => x.report.type === "ask.created" && x.causality.command_id === commandId)?.causality.ask_id ?? "";
    return askId !== "";
  });
  return askId;
}

describe("retries", () => {
  it("a transient failure is retried with backoff and the command completes once", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    behaviours.set(m.command_id, (n) => {
      if (n <= 2) throw new Error(`transient failure ${n}`);
    });
    await publishCommand(m);
    await until(t, "completed", (rs) => reportTypesOf(rs, m.command_id).includes("command.completed"));
    await sleep(300);
    expect(calls.get(m.command_id)).toBe(3);
    expect(reportTypesOf(await reports(t), m.command_id)).toEqual(RAN);
    expect(await row(m.command_id)).toMatchObject({ status: "done", attempts: 3 });
  });

  it("attempts spent → command.failed with the handler's own code, one dead letter, no further run", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    behaviours.set(m.command_id, () => {
      throw new HandlerError("HANDLER_FAILED", "the provider timed out", true);
    });
    await publishCommand(m);
    await until(t, "failed", (rs) => reportTypesOf(rs, m.command_id).includes("command.failed"));
    await sleep(500);
    expect(calls.get(m.command_id)).toBe(4);
    const failed = (await reports(t)).find((r) => r.report.type === "command.failed");
    expect((failed!.report as { error: { code: string; message: string } }).error).toMatchObject({
      code: "HANDLER_FAILED",
      message: expect.stringMatching(/after 4 attempts/),
    });
    const dl = await deadLetters(t);
    expect(dl).toHaveLength(1);
    expect(dl[0]).toMatchObject({ reason: "retries_exhausted", code: "HANDLER_FAILED", deliveries: 4 });
    expect(await row(m.command_id)).toMatchObject({ status: "failed" });
  });

  it("a permanent HandlerError fails at once, without retries and without a dead letter", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    behaviours.set(m.command_id, () => {
      throw new HandlerError("INSUFFICIENT_SLOTS", "no slots", false);
    });
    await publishCommand(m);
    await until(t, "failed", (rs) => reportTypesOf(rs, m.command_id).includes("command.failed"));
    await sleep(300);
    expect(calls.get(m.command_id)).toBe(1);
    expect(await deadLetters(t)).toHaveLength(0);
    expect(await row(m.command_id)).toMatchObject({ status: "failed", attempts: 1 });
  });
});

describe("the quick path", () => {
  it("a handler done within QUICK_COMMAND_MS: one insert as done, accepted/started/completed in order", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    await publishCommand(m);
    await until(t, "completed", (rs) => reportTypesOf(rs, m.command_id).includes("command.completed"));
    await sleep(100);
    expect(reportTypesOf(await reports(t), m.command_id)).toEqual(RAN);
    expect(completedByUpdate.has(m.command_id)).toBe(false);
    const r = await row(m.command_id);
    expect(r).toMatchObject({ status: "done", attempts: 1, result: { summary: "call 1" } });
    expect(r.started_at!.getTime()).toBeLessThanOrEqual(r.finished_at!.getTime());
  });

  it("a slower handler is recorded as running and reported started while it still runs", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    behaviours.set(m.command_id, () => held);
    await publishCommand(m);
    await until(t, "started", (rs) => reportTypesOf(rs, m.command_id).includes("command.started"));
    expect(await row(m.command_id)).toMatchObject({ status: "running", attempts: 1 });
    expect(reportTypesOf(await reports(t), m.command_id)).toEqual(["command.accepted", "command.started"]);
    release();
    await until(t, "completed", (rs) => reportTypesOf(rs, m.command_id).includes("command.completed"));
    expect(completedByUpdate.has(m.command_id)).toBe(true);
    expect(calls.get(m.command_id)).toBe(1);
    expect(await row(m.command_id)).toMatchObject({ status: "done", attempts: 1 });
  });

  it("a quick handler that reports progress gets its accepted/started before the progress report", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    behaviours.set(m.command_id, async (_n, ctx) => {
      await ctx.progress("half", 50);
    });
    await publishCommand(m);
    await until(t, "completed", (rs) => reportTypesOf(rs, m.command_id).includes("command.completed"));
    expect(reportTypesOf(await reports(t), m.command_id)).toEqual([
      "command.accepted",
      "command.started",
      "command.progress",
      "command.completed",
    ]);
    expect(completedByUpdate.has(m.command_id)).toBe(true);
  });

  it("recorded as done but its reports lost (the worker died before publishing): a redelivery restates all three, nothing runs", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    const green = policyFor("prep_pack.create", { risk_overrides: {}, policy_version: 0 }, 0, 3600);
    await receiveCommands(tdb.db, [
      { m, policy: green, now: new Date(), done: { result: { checklist: [], summary: "ran" }, startedAt: new Date() } },
    ]);
    await publishCommand(m);
    await until(t, "completed", (rs) => reportTypesOf(rs, m.command_id).includes("command.completed"));
    expect(reportTypesOf(await reports(t), m.command_id)).toEqual(RAN);
    expect(calls.get(m.command_id)).toBeUndefined();
  });
});

describe("redelivery and risk", () => {
  it("a finished command delivered again (past the duplicate window) restates its outcome and never runs again", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "prep_pack.create", PREP);
    await publishCommand(m);
    await until(t, "completed", (rs) => reportTypesOf(rs, m.command_id).includes("command.completed"));
    // The same message again under another msg id: what a redelivery after the window looks like.
    await js()
      .publish(`${subjects.command(t, m.command_id)}`, JSON.stringify(m), { msgID: randomUUID() })
      .catch(() => {});
    await sleep(800);
    expect(calls.get(m.command_id)).toBe(1);
    expect(
      reportTypesOf(await reports(t), m.command_id).filter((x) => x === "command.completed").length,
    ).toBeLessThanOrEqual(2);
    expect(await row(m.command_id)).toMatchObject({ status: "done", attempts: 1 });
  });

  it("YELLOW runs with risk.warning; RED creates one ask even when delivered twice, and nothing runs", async () => {
    const t = uniqueTenant();
    await setCompliance(t, { risk_overrides: { "echo.test": "YELLOW", "prep_pack.create": "RED" } });
    const y = commandOf(t, "echo.test", { x: 1 });
    await publishCommand(y);
    await until(t, "yellow done", (rs) => reportTypesOf(rs, y.command_id).includes("command.completed"));
    expect(reportTypesOf(await reports(t), y.command_id)).toEqual([
      "command.accepted",
      "command.started",
      "risk.warning",
      "command.completed",
    ]);
    const r = commandOf(t, "prep_pack.create", PREP);
    await publishCommand(r);
    await publishCommand(r, randomUUID());
    const askId = await askOf(t, r.command_id);
    await sleep(800);
    const asks = await tdb.db.selectFrom("asks").selectAll().where("command_id", "=", r.command_id).execute();
    expect(asks).toHaveLength(1);
    expect(asks[0]).toMatchObject({ ask_id: askId, status: "open", requested_by: "user-1", approvals_required: 1 });
    expect(calls.get(r.command_id)).toBeUndefined();
    expect(await row(r.command_id)).toMatchObject({ status: "waiting_approval", risk_level: "RED" });
  });
});

describe("approved actions", () => {
  it("a type raised to RED runs its own handler after approval, once, and reports ask.executed with the result", async () => {
    const t = uniqueTenant();
    await setCompliance(t, { risk_overrides: { "draft_email.create": "RED" } });
    const m = commandOf(t, "draft_email.create", { to: "kim@example.com", brief: "Decline the offer politely" });
    await publishCommand(m);
    const askId = await askOf(t, m.command_id);
    await approve(t, askId);
    await until(t, "executed", (rs) =>
      rs.some((x) => x.report.type === "ask.executed" && x.causality.ask_id === askId),
    );
    const executed = (await reports(t)).find((x) => x.report.type === "ask.executed");
    expect((executed!.report as { result: { subject: string; body: string } }).result.body).toMatch(/decline/i);
    expect(executed?.causality.correlation_id).toBe("c-approve");
    expect(await row(m.command_id)).toMatchObject({ status: "done" });
    const history = await tdb.db
      .selectFrom("action_history")
      .select(["event", "executor_id"])
      .where("ask_id", "=", askId)
      .orderBy("id")
      .execute();
    expect(history).toEqual([
      { event: "decided", executor_id: "approver-1" },
      { event: "executed", executor_id: "approver-1" },
    ]);
  });

  it("an approved action delivered twice runs once (one share in the outbox, one ask.executed)", async () => {
    const t = uniqueTenant();
    const m = commandOf(t, "external_share.prepare", {
      recipient: "p@example.org",
      channel: "email",
      resource: { ref: "d", title: "D" },
    });
    await publishCommand(m);
    const askId = await askOf(t, m.command_id);
    await approve(t, askId);
    // the same dispatch again, as a redelivery past the window would bring it
    const dispatch = {
      v: 1,
      kind: "approved_action",
      tenant: t,
      ask_id: askId,
      command_id: m.command_id,
      correlation_id: "c-approve",
      approved_by: ["approver-1"],
      approved_at: new Date().toISOString(),
    };
    await js().publish(subjects.approvedAction(t, m.command_id), JSON.stringify(dispatch), { msgID: randomUUID() });
    await until(t, "executed", (rs) => rs.some((x) => x.report.type === "ask.executed"));
    await sleep(800);
    expect(await tdb.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute()).toHaveLength(1);
    const executed = (await reports(t)).filter((x) => x.report.type === "ask.executed");
    expect(executed.length).toBeGreaterThanOrEqual(1);
    expect(new Set(executed.map((x) => JSON.stringify(x.report))).size).toBe(1);
  });

  it("approve exactly what runs: changed params → ACTION_CHANGED; a policy change → POLICY_CHANGED; neither runs", async () => {
    const t = uniqueTenant();
    const share = { recipient: "p@example.org", channel: "email", resource: { ref: "d", title: "D" } };
    const a = commandOf(t, "external_share.prepare", share);
    const b = commandOf(t, "external_share.prepare", share);
    await publishCommand(a);
    await publishCommand(b);
    const askA = await askOf(t, a.command_id);
    const askB = await askOf(t, b.command_id);
    await tdb.db
      .updateTable("commands")
      .set({ params: JSON.stringify({ ...share, recipient: "attacker@example.com" }) })
      .where("command_id", "=", a.command_id)
      .execute();
    await approve(t, askA);
    await setCompliance(t, { ask_ttl_seconds: 120 });
    await approve(t, askB);
    await until(t, "both failed", (rs) => rs.filter((x) => x.report.type === "ask.execution_failed").length === 2);
    const failed = (await reports(t)).filter((x) => x.report.type === "ask.execution_failed");
    const codeOf = (askId: string) =>
      (failed.find((x) => x.causality.ask_id === askId)!.report as { error: { code: string } }).error.code;
    expect(codeOf(askA)).toBe("ACTION_CHANGED");
    expect(codeOf(askB)).toBe("POLICY_CHANGED");
    expect(
      await tdb.db.selectFrom("share_outbox").selectAll().where("ask_id", "in", [askA, askB]).execute(),
    ).toHaveLength(0);
  });
});

describe("poison", () => {
  it("malformed bodies and bodies naming another tenant than their subject go straight to the dead-letter stream", async () => {
    const t = uniqueTenant();
    const other = uniqueTenant();
    const id = randomUUID();
    await js().publish(subjects.command(t, id), "{not json", { msgID: randomUUID() });
    const m = commandOf(other, "echo.test", { a: 1 });
    await js().publish(subjects.command(t, m.command_id), JSON.stringify(m), { msgID: randomUUID() });
    await waitFor(async () => (await deadLetters(t)).length === 2, 10_000, "two dead letters");
    const dl = await deadLetters(t);
    expect(dl.map((d) => d.reason)).toEqual(["poison", "poison"]);
    expect(dl.map((d) => d.error).sort()).toEqual([
      "the body is not UTF-8 JSON",
      "the tenant or command_id of the body differs from the subject",
    ]);
    expect(await tdb.db.selectFrom("commands").selectAll().where("org_id", "=", other.org_id).execute()).toHaveLength(
      0,
    );
  });

  it("a command id reused with another body after retention dropped the first: the first stands, the second is dead-lettered", async () => {
    const t = uniqueTenant();
    const first = commandOf(t, "echo.test", { n: 1 });
    await publishCommand(first);
    await until(t, "first done", (rs) => reportTypesOf(rs, first.command_id).includes("command.completed"));
    const second = {
      ...first,
      params: { n: 2 },
      body_hash: commandBodyHash({ type: "echo.test", context: {}, params: { n: 2 } }),
    };
    await js().publish(subjects.command(t, first.command_id), JSON.stringify(second), { msgID: randomUUID() });
    await waitFor(async () => (await deadLetters(t)).length === 1, 10_000, "dead letter");
    expect((await deadLetters(t))[0]).toMatchObject({ reason: "idempotency_conflict", code: "IDEMPOTENCY_CONFLICT" });
    expect((await row(first.command_id)).result).toEqual({ echo: { n: 1 } });
  });
});

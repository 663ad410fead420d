import { headers as natsHeaders } from "@nats-io/nats-core";
import { type ApiError, CaseActionNotification, DeadLetter, STREAMS, subjects } from "@nexus/contracts";
import { appendHistory, decideAsk, transitionAsk } from "@nexus/platform";
import { uniqueTenant, waitFor } from "@nexus/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { OutboxShareConnector } from "../src/connector/outbox.ts";
import { type ShareConnector, shareIdOf } from "../src/connector/types.ts";
import {
  askRow,
  collectNotifications,
  commandStatus,
  consumerIdle,
  decideLikeGateway,
  decisionMessage,
  type Harness,
  historyRows,
  outboxRows,
  publishDecision,
  readStream,
  reportsOfAsk,
  type SeededAsk,
  seedAsk,
  sleep,
  startHarness,
  startWorker,
  stopWorkers,
} from "./helpers.ts";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});
afterEach(async () => {
  await stopWorkers(h);
});

/** CONTRACT.md example: `2026-02-11T12:00:00.000000+00:00`. */
const CONTRACT_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/;

const typesOf = async (s: SeededAsk) => (await reportsOfAsk(h, s.tenant, s.askId)).map((r) => r.report.type);
const countOf = async (s: SeededAsk, type: string) => (await typesOf(s)).filter((t) => t === type).length;
const waitStatus = (s: SeededAsk, status: string, ms = 15_000) =>
  waitFor(async () => (await askRow(h, s)).status === status, ms, `ask ${s.askId} ${status}`);
const waitReport = (s: SeededAsk, type: string, ms = 10_000) =>
  waitFor(async () => (await countOf(s, type)) > 0, ms, `${type} of ${s.askId}`);

describe("approve and reject", () => {
  test("approve → ask.decided then ask.executed, one share, history with executor/note/correlation, command done, valid notifications", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    const notes = collectNotifications(h, t);
    await startWorker(h);
    await decideLikeGateway(h, s, "approve", { by: "user-123", note: "ok to send", correlationId: "c-002" });
    await waitStatus(s, "done");
    await waitReport(s, "ask.executed");

    const reports = await reportsOfAsk(h, t, s.askId);
    expect(reports.map((r) => r.report.type)).toEqual(["ask.decided", "ask.executed"]);
    for (const r of reports)
      expect(r.causality).toEqual({ correlation_id: "c-002", command_id: s.commandId, ask_id: s.askId });
    const executed = reports[1]!.report;
    expect(executed.type).toBe("ask.executed");
    expect((executed as { result: unknown }).result).toEqual({
      share_id: shareIdOf(s.askId),
      recipient: "kim@example.com",
      channel: "email",
      resource: { ref: "doc:quarterly-report", title: "Quarterly report" },
      status: "queued",
    });

    const outbox = await outboxRows(h, s.askId);
    expect(outbox).toHaveLength(1);
    expect(outbox[0]).toMatchObject({
      share_id: shareIdOf(s.askId),
      org_id: t.org_id,
      project_id: t.project_id,
      command_id: s.commandId,
      recipient: "kim@example.com",
      channel: "email",
      message: "Here is the report",
      status: "queued",
    });

    const history = await historyRows(h, s);
    expect(history.map((e) => e.event)).toEqual(["decided", "executed"]);
    for (const e of history)
      expect(e).toMatchObject({
        executor_id: "user-123",
        note: "ok to send",
        correlation_id: "c-002",
        decision: "approve",
      });
    expect(await commandStatus(h, s)).toBe("done");

    await waitFor(() => notes.items.length >= 2, 5000, "two notifications");
    notes.stop();
    const parsed = notes.items.map((n) => CaseActionNotification.parse(n));
    expect(parsed.map((n) => [n.action_type, n.status_code, n.message, n.approved])).toEqual([
      ["APPROVE", "APPROVED", "Action approved", true],
      ["EXECUTE", "EXECUTED", "Action executed", true],
    ]);
    for (const n of parsed) {
      expect(n).toMatchObject({
        type: "NOTIFICATION",
        category: "CASE_ACTION",
        ask_id: s.askId,
        command_id: s.commandId,
        executor_id: "user-123",
        correlation_id: "c-002",
      });
      expect(n.timestamp).toMatch(CONTRACT_TIMESTAMP);
    }
  });

  test("reject → ask.cancelled, no share ever, command cancelled, REJECT notification", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    const notes = collectNotifications(h, t);
    await startWorker(h);
    await decideLikeGateway(h, s, "reject", { by: "user-9", note: "not this one", correlationId: "c-rej" });
    await waitStatus(s, "cancelled");
    await waitReport(s, "ask.cancelled");
    await waitFor(() => consumerIdle(h), 10_000, "consumer idle");
    await sleep(200);

    expect(await typesOf(s)).toEqual(["ask.decided", "ask.cancelled"]);
    expect(await outboxRows(h, s.askId)).toHaveLength(0);
    expect(await commandStatus(h, s)).toBe("cancelled");
    const history = await historyRows(h, s);
    expect(history.map((e) => [e.event, e.executor_id, e.note, e.correlation_id])).toEqual([
      ["decided", "user-9", "not this one", "c-rej"],
      ["cancelled", "user-9", "not this one", "c-rej"],
    ]);
    notes.stop();
    expect(notes.items).toHaveLength(1);
    expect(CaseActionNotification.parse(notes.items[0])).toMatchObject({
      action_type: "REJECT",
      status_code: "REJECTED",
      message: "Action rejected",
      approved: false,
      executor_id: "user-9",
    });
  });

  test("a decision whose gateway commit failed (ask still open) is applied by the worker and executed", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    await startWorker(h);
    // The gateway published the decision, then its transaction rolled back: the row is still open.
    await publishDecision(h.js, decisionMessage(s, "approve", { by: "user-7", note: "go", correlationId: "c-late" }));
    await waitStatus(s, "done");
    await waitReport(s, "ask.executed");
    expect(await typesOf(s)).toEqual(["ask.decided", "ask.executed"]);
    const row = await askRow(h, s);
    expect(row).toMatchObject({ decision: "approve", decided_by: "user-7", decision_correlation_id: "c-late" });
    const history = await historyRows(h, s);
    expect(history.map((e) => [e.event, e.executor_id, e.correlation_id])).toEqual([
      ["decided", "user-7", "c-late"],
      ["executed", "user-7", "c-late"],
    ]);
    expect(await outboxRows(h, s.askId)).toHaveLength(1);
  });
});

describe("exactly once", () => {
  test.each([
    ["approve", "reject"],
    ["reject", "approve"],
  ] as const)(
    "20 concurrent mixed decisions (%s first) → one winner, at most one execution, 5× redelivery executes once",
    async (first, second) => {
      const t = uniqueTenant();
      const s = await seedAsk(h.db, t);
      const notes = collectNotifications(h, t);
      await Promise.all([startWorker(h), startWorker(h), startWorker(h)]);
      const attempts = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const m = decisionMessage(s, i % 2 === 0 ? first : second, { by: `user-${i}`, correlationId: `c-${i}` });
          const won = await h.db.transaction().execute(async (tx) => {
            const row = await decideAsk(tx, t, s.askId, {
              decision: m.decision,
              decided_by: m.decided_by,
              note: null,
              correlation_id: m.correlation_id,
              now: new Date(),
            });
            if (row)
              await appendHistory(tx, t, {
                ask_id: s.askId,
                command_id: s.commandId,
                event: "decided",
                decision: m.decision,
                executor_id: m.decided_by,
                note: null,
                correlation_id: m.correlation_id,
              });
            return Boolean(row);
          });
          return { m, won };
        }),
      );
      const winners = attempts.filter((a) => a.won);
      expect(winners).toHaveLength(1);
      const winner = winners[0]!.m;
      // Every message (the losers' too, as a hostile replay) plus the winner's 5 more times, as distinct stream messages.
      await Promise.all([
        ...attempts.map((a, i) => publishDecision(h.js, a.m, `d-${i}`)),
        ...[1, 2, 3, 4, 5].map((k) => publishDecision(h.js, winner, `again-${k}`)),
      ]);
      await waitStatus(s, winner.decision === "approve" ? "done" : "cancelled");
      await waitFor(() => consumerIdle(h), 20_000, "all 25 decisions settled");
      await sleep(200);

      const approved = winner.decision === "approve";
      const history = await historyRows(h, s);
      expect(history.filter((e) => e.event === "decided")).toHaveLength(1);
      expect(history.filter((e) => e.event === "executed")).toHaveLength(approved ? 1 : 0);
      expect(history.filter((e) => e.event === "cancelled")).toHaveLength(approved ? 0 : 1);
      expect(await outboxRows(h, s.askId)).toHaveLength(approved ? 1 : 0);
      expect(await countOf(s, "ask.decided")).toBe(1);
      expect(await countOf(s, "ask.executed")).toBe(approved ? 1 : 0);
      expect(await countOf(s, "ask.cancelled")).toBe(approved ? 0 : 1);
      const row = await askRow(h, s);
      expect(row.decided_by).toBe(winner.decided_by);
      expect(await commandStatus(h, s)).toBe(approved ? "done" : "cancelled");
      notes.stop();
      // One notification per fact, although three workers saw the decided ask concurrently.
      expect(notes.items.map((n) => n.status_code)).toEqual(approved ? ["APPROVED", "EXECUTED"] : ["REJECTED"]);
    },
  );

  test("crash between decision and execution: stopping a worker mid-action naks it and a new worker executes exactly once", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    let entered!: () => void;
    const enteredP = new Promise<void>((r) => {
      entered = r;
    });
    const hanging: ShareConnector = {
      share: (_req, signal) =>
        new Promise((_resolve, reject) => {
          entered();
          signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
        }),
    };
    const w1 = await startWorker(h, { connector: hanging });
    await decideLikeGateway(h, s, "approve");
    await enteredP;
    expect((await askRow(h, s)).status).toBe("executing");
    await w1.stop(0); // the "crash": in-flight message nak'ed, nothing written after it
    expect((await askRow(h, s)).status).toBe("executing");
    expect(await outboxRows(h, s.askId)).toHaveLength(0);

    await startWorker(h);
    await waitStatus(s, "done");
    await waitFor(() => consumerIdle(h), 10_000, "consumer idle");
    await sleep(200);
    expect(await outboxRows(h, s.askId)).toHaveLength(1);
    expect(await countOf(s, "ask.executed")).toBe(1);
    expect((await historyRows(h, s)).filter((e) => e.event === "executed")).toHaveLength(1);
    expect(await commandStatus(h, s)).toBe("done");
  });

  test("re-execution from executing with the share already in the outbox → still one share, ask done", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    const m = decisionMessage(s, "approve", { by: "user-1", correlationId: "c-re" });
    await decideAsk(h.db, t, s.askId, {
      decision: "approve",
      decided_by: "user-1",
      note: null,
      correlation_id: "c-re",
      now: new Date(),
    });
    await appendHistory(h.db, t, {
      ask_id: s.askId,
      command_id: s.commandId,
      event: "decided",
      decision: "approve",
      executor_id: "user-1",
      note: null,
      correlation_id: "c-re",
    });
    expect(await transitionAsk(h.db, t, s.askId, ["decided"], "executing", new Date())).toBeDefined();
    // The crashed worker got as far as the connector.
    await new OutboxShareConnector(h.db).share({
      share_id: shareIdOf(s.askId),
      tenant: t,
      ask_id: s.askId,
      command_id: s.commandId,
      recipient: s.params.recipient,
      channel: s.params.channel,
      resource: s.params.resource,
    });
    await publishDecision(h.js, m);
    await startWorker(h);
    await waitStatus(s, "done");
    await waitReport(s, "ask.executed");
    expect(await outboxRows(h, s.askId)).toHaveLength(1);
    expect(await countOf(s, "ask.executed")).toBe(1);
    expect((await historyRows(h, s)).map((e) => e.event)).toEqual(["decided", "executed"]);
  });
});

describe("approve exactly what runs", () => {
  const expectFailed = async (s: SeededAsk, code: ApiError["code"]) => {
    await waitStatus(s, "failed");
    await waitReport(s, "ask.execution_failed");
    const reports = await reportsOfAsk(h, s.tenant, s.askId);
    expect(reports.map((r) => r.report.type)).toEqual(["ask.decided", "ask.execution_failed"]);
    const failed = reports[1]!.report as { error: ApiError };
    expect(failed.error.code).toBe(code);
    expect(((await askRow(h, s)).error as ApiError).code).toBe(code);
    expect(await outboxRows(h, s.askId)).toHaveLength(0);
    expect(await commandStatus(h, s)).toBe("failed");
    const history = await historyRows(h, s);
    expect(history.map((e) => e.event)).toEqual(["decided", "execution_failed"]);
  };

  test("ACTION_CHANGED when the command's params or the held action were tampered with after the ask", async () => {
    const t = uniqueTenant();
    const notes = collectNotifications(h, t);
    const a = await seedAsk(h.db, t);
    const b = await seedAsk(h.db, t);
    await h.db
      .updateTable("commands")
      .set({ params: JSON.stringify({ ...a.params, recipient: "evil@example.com" }) })
      .where("command_id", "=", a.commandId)
      .execute();
    await h.db
      .updateTable("asks")
      .set({
        action: JSON.stringify({ ...(b.row.action as object), params: { ...b.params, recipient: "evil@example.com" } }),
      })
      .where("ask_id", "=", b.askId)
      .execute();
    await startWorker(h);
    await decideLikeGateway(h, a, "approve");
    await decideLikeGateway(h, b, "approve");
    await expectFailed(a, "ACTION_CHANGED");
    await expectFailed(b, "ACTION_CHANGED");
    await waitFor(() => notes.items.length >= 4, 5000, "notifications");
    notes.stop();
    const failures = notes.items
      .map((n) => CaseActionNotification.parse(n))
      .filter((n) => n.status_code === "EXECUTION_FAILED");
    expect(failures).toHaveLength(2);
    for (const f of failures)
      expect(f).toMatchObject({
        action_type: "EXECUTE",
        message: "Action execution failed",
        error_code: "ACTION_CHANGED",
      });
  });

  test("POLICY_CHANGED when the tenant's compliance policy version moved after the ask", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    await h.db
      .updateTable("tenant_settings")
      .set((eb) => ({ policy_version: eb("policy_version", "+", 1) }))
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .execute();
    await startWorker(h);
    await decideLikeGateway(h, s, "approve");
    await expectFailed(s, "POLICY_CHANGED");
  });

  test("a connector that keeps failing → retried with backoff, then RETRIES_EXHAUSTED, ask.execution_failed and a DLQ entry", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t);
    let calls = 0;
    const broken: ShareConnector = {
      share: async () => {
        calls += 1;
        throw new Error("connector unavailable");
      },
    };
    await startWorker(h, { connector: broken, config: { maxRetries: 3, retryBaseMs: 20, retryMaxMs: 50 } });
    await decideLikeGateway(h, s, "approve");
    await expectFailed(s, "RETRIES_EXHAUSTED");
    expect(calls).toBe(3);
    await waitFor(
      async () => (await readStream<DeadLetter>(h, STREAMS.dlq, subjects.dlq(t, "approval"))).length === 1,
      5000,
      "dead letter",
    );
    const [letter] = await readStream<DeadLetter>(h, STREAMS.dlq, subjects.dlq(t, "approval"));
    expect(DeadLetter.parse(letter)).toMatchObject({
      reason: "retries_exhausted",
      deliveries: 3,
      stream: STREAMS.approvals,
    });
  });
});

describe("command types a tenant raised to RED", () => {
  test("an approved doc.summary.create runs the command-worker's handler: ask.executed with its result, command done", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t, {
      held: {
        type: "doc.summary.create",
        params: { text: "The plan is ready. Budget was approved on Monday. Hiring starts in May.", max_sentences: 2 },
      },
    });
    await startWorker(h);
    await decideLikeGateway(h, s, "approve", { correlationId: "c-raised" });
    await waitStatus(s, "done");
    await waitReport(s, "ask.executed");
    const executed = (await reportsOfAsk(h, t, s.askId)).find((r) => r.report.type === "ask.executed")!;
    const result = (executed.report as { result: { summary: string; sentences: string[] } }).result;
    expect(result.sentences.length).toBeGreaterThan(0);
    expect(result.sentences.length).toBeLessThanOrEqual(2);
    expect(executed.causality.correlation_id).toBe("c-raised");
    expect(await commandStatus(h, s)).toBe("done");
    expect(await outboxRows(h, s.askId)).toHaveLength(0);
  });

  test("a handler's deliberate failure fails the ask with the handler's code (INSUFFICIENT_SLOTS), no retries", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t, {
      held: {
        type: "calendar.options.create",
        params: {
          duration_minutes: 60,
          window: { start: "2026-03-02T09:00:00Z", end: "2026-03-02T10:00:00Z" },
          busy: [],
          timezone: "UTC",
        },
      },
    });
    await startWorker(h);
    await decideLikeGateway(h, s, "approve");
    await waitStatus(s, "failed");
    await waitReport(s, "ask.execution_failed");
    const failed = (await reportsOfAsk(h, t, s.askId)).find((r) => r.report.type === "ask.execution_failed")!;
    expect((failed.report as { error: ApiError }).error.code).toBe("INSUFFICIENT_SLOTS");
    expect(await commandStatus(h, s)).toBe("failed");
  });
});

describe("poison messages", () => {
  test("bad JSON, wrong schema, a tenant differing from the subject and another tenant's ask go to the DLQ; the consumer moves on", async () => {
    const t = uniqueTenant();
    const other = uniqueTenant();
    const s = await seedAsk(h.db, t);
    const foreign = await seedAsk(h.db, other);
    await startWorker(h);
    const raw = (subject: string, body: string) => {
      const hd = natsHeaders();
      hd.set("Nats-Msg-Id", `${subject}:${body.length}:${Math.random()}`);
      return h.js.publish(subject, body, { headers: hd });
    };
    await raw(subjects.approval(t, "junk-1"), "not json{");
    await raw(subjects.approval(t, "junk-2"), JSON.stringify({ v: 1, decision: "maybe" }));
    // Body names tenant `other` but travels on t's subject.
    await raw(subjects.approval(t, foreign.askId), JSON.stringify(decisionMessage(foreign, "approve")));
    // Well-formed, on t's subject, naming t, but the ask belongs to `other`.
    await publishDecision(h.js, { ...decisionMessage(foreign, "approve"), tenant: t });
    // A subject without a tenant.
    await raw("nexus.approval.broken", "{}");

    // The consumer is not stuck behind them.
    await decideLikeGateway(h, s, "approve");
    await waitStatus(s, "done");

    await waitFor(
      async () => (await readStream<DeadLetter>(h, STREAMS.dlq, subjects.dlq(t, "approval"))).length === 4,
      10_000,
      "four dead letters for the tenant",
    );
    const letters = (await readStream<DeadLetter>(h, STREAMS.dlq, subjects.dlq(t, "approval"))).map((l) =>
      DeadLetter.parse(l),
    );
    expect(letters.every((l) => l.reason === "poison" && l.stream === STREAMS.approvals)).toBe(true);
    expect(letters.find((l) => l.subject.endsWith("junk-1"))?.payload).toBe("not json{");
    expect(letters.some((l) => l.error.startsWith("ASK_NOT_FOUND"))).toBe(true);
    const unknown = await readStream<DeadLetter>(h, STREAMS.dlq, subjects.dlq(null, "approval"));
    expect(unknown.map((l) => l.subject)).toEqual(["nexus.approval.broken"]);
    // The foreign ask was never touched.
    const f = await askRow(h, foreign);
    expect(f.status).toBe("open");
    expect(await outboxRows(h, foreign.askId)).toHaveLength(0);
  });
});

import { CaseActionNotification } from "@nexus/contracts";
import { uniqueTenant, waitFor } from "@nexus/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { createExpirySweeper } from "../src/expiry.ts";
import { natsNotifier } from "../src/notify.ts";
import {
  askRow,
  collectNotifications,
  commandStatus,
  consumerIdle,
  decisionMessage,
  type Harness,
  historyRows,
  outboxRows,
  publishDecision,
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

const typesOf = async (s: SeededAsk) => (await reportsOfAsk(h, s.tenant, s.askId)).map((r) => r.report.type);
const sweeper = () =>
  createExpirySweeper({
    db: h.db,
    reports: h.reports,
    notifier: natsNotifier(h.nc),
    logger: h.logger,
    intervalMs: 60_000,
  });

describe("expiry", () => {
  test("a due ask → ask.expired, status expired, command cancelled, history expired by system, EXPIRE notification", async () => {
    const t = uniqueTenant();
    const notes = collectNotifications(h, t);
    const s = await seedAsk(h.db, t, { expiresInMs: 300 });
    await startWorker(h, { config: { expirySweepMs: 100 } });
    await waitFor(async () => (await askRow(h, s)).status === "expired", 10_000, "expired");
    await waitFor(async () => (await typesOf(s)).includes("ask.expired"), 5000, "ask.expired");

    const [report] = await reportsOfAsk(h, t, s.askId);
    expect(report?.report).toMatchObject({
      type: "ask.expired",
      status: "cancelled",
      ask: { ask_id: s.askId, status: "expired" },
    });
    expect(report?.causality).toEqual({ correlation_id: s.correlationId, command_id: s.commandId, ask_id: s.askId });
    expect(await commandStatus(h, s)).toBe("cancelled");
    const history = await historyRows(h, s);
    expect(history.map((e) => [e.event, e.executor_id, e.correlation_id])).toEqual([
      ["expired", "system", s.correlationId],
    ]);
    await waitFor(async () => (await askRow(h, s)).expiry_reported, 5000, "expiry_reported");
    await waitFor(() => notes.items.length >= 1, 5000, "notification");
    notes.stop();
    expect(notes.items).toHaveLength(1);
    expect(CaseActionNotification.parse(notes.items[0])).toMatchObject({
      action_type: "EXPIRE",
      status_code: "EXPIRED",
      message: "Action expired",
      approved: false,
      executor_id: "system",
      ask_id: s.askId,
      command_id: s.commandId,
      correlation_id: s.correlationId,
    });
  });

  test("an expired ask whose approve message arrives anyway never executes", async () => {
    const t = uniqueTenant();
    const expired = await seedAsk(h.db, t, { expiresInMs: -1000 });
    const dueButOpen = await seedAsk(h.db, t, { expiresInMs: -1000 });
    // First one expired by a sweep; the second is past due but no sweep ran yet.
    const sw = sweeper();
    await sw.tick();
    expect((await askRow(h, expired)).status).toBe("expired");
    await h.db.updateTable("asks").set({ status: "open" }).where("ask_id", "=", dueButOpen.askId).execute();

    await startWorker(h); // sweeper off: only the decision path is exercised
    await publishDecision(h.js, decisionMessage(expired, "approve"));
    await publishDecision(h.js, decisionMessage(dueButOpen, "approve"));
    await waitFor(() => consumerIdle(h), 10_000, "decisions settled");
    await sleep(200);

    expect((await askRow(h, expired)).status).toBe("expired");
    const late = await askRow(h, dueButOpen);
    expect(late.status).toBe("open");
    expect(late.decision).toBeNull();
    for (const s of [expired, dueButOpen]) {
      expect(await outboxRows(h, s.askId)).toHaveLength(0);
      const types = await typesOf(s);
      expect(types).not.toContain("ask.executed");
      expect(types).not.toContain("ask.decided");
      expect((await historyRows(h, s)).some((e) => e.event === "decided" || e.event === "executed")).toBe(false);
    }
  });

  test("asks that fell due while no worker ran expire when one starts", async () => {
    const t = uniqueTenant();
    const asks = await Promise.all([1, 2, 3].map(() => seedAsk(h.db, t, { expiresInMs: -60_000 })));
    // A long period: only the start-up sweep can expire them within the wait.
    await startWorker(h, { config: { expirySweepMs: 600_000 } });
    await waitFor(
      async () =>
        (await Promise.all(asks.map((s) => askRow(h, s)))).every((r) => r.status === "expired" && r.expiry_reported),
      5000,
      "all expired on start",
    );
    for (const s of asks) expect(await typesOf(s)).toEqual(["ask.expired"]);
  });

  test("two sweepers concurrently → each ask expires once: one history row, one ask.expired, one notification", async () => {
    const t = uniqueTenant();
    const notes = collectNotifications(h, t);
    const asks = await Promise.all(Array.from({ length: 10 }, () => seedAsk(h.db, t, { expiresInMs: -1000 })));
    const a = sweeper();
    const b = sweeper();
    const counts = await Promise.all([a.tick(), b.tick(), a.tick(), b.tick(), a.tick(), b.tick()]);
    // Other tests' leftovers in this database may be swept too; ours are exactly 10.
    expect(counts.reduce((x, y) => x + y, 0)).toBeGreaterThanOrEqual(10);
    await sleep(300);
    notes.stop();
    for (const s of asks) {
      expect((await askRow(h, s)).status).toBe("expired");
      expect((await historyRows(h, s)).filter((e) => e.event === "expired")).toHaveLength(1);
      expect(await typesOf(s)).toEqual(["ask.expired"]);
      expect(notes.items.filter((n) => n.ask_id === s.askId)).toHaveLength(1);
    }
  });

  test("an expiry committed but never reported (crash before publish) is re-published by a later sweep", async () => {
    const t = uniqueTenant();
    const s = await seedAsk(h.db, t, { expiresInMs: -60_000 });
    const longAgo = new Date(Date.now() - 60_000);
    await h.db
      .updateTable("asks")
      .set({ status: "expired", updated_at: longAgo, expiry_reported: false })
      .where("ask_id", "=", s.askId)
      .execute();
    await sweeper().tick();
    expect((await askRow(h, s)).expiry_reported).toBe(true);
    const reports = await reportsOfAsk(h, t, s.askId);
    expect(reports.map((r) => [r.report.type, r.ts])).toEqual([["ask.expired", longAgo.toISOString()]]);
    // Re-publishing again is deduplicated by Nats-Msg-Id.
    await h.db.updateTable("asks").set({ expiry_reported: false }).where("ask_id", "=", s.askId).execute();
    await sweeper().tick();
    expect(await typesOf(s)).toEqual(["ask.expired"]);
  });
});

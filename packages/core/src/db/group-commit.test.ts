/**
 * Group commit: natural batching (no batch while idle, batches while a statement is out), the
 * linger of a steady stream,
 * results per item in order, one bad item failing alone, an outage failing all at once — and the
 * batched command transitions on a real Postgres doing exactly what each would do alone.
 */
import { randomUUID } from "node:crypto";
import type { CommandMessage, Tenant } from "@nexus/contracts";
import { createTestDatabase, type TestDatabase, uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { completeCommands, getCommand, type ReceiveItem, receiveCommands, restateCommand } from "../commands.ts";
import { hashCanonical } from "../hash.ts";
import { policyFor } from "../risk.ts";
import { readCommandContexts } from "../settings.ts";
import { groupCommit } from "./group-commit.ts";

/** A statement stand-in that records its batches and answers after `ms`. */
function recorder(ms = 5, fail?: (items: readonly number[]) => unknown) {
  const batches: number[][] = [];
  const run = async (items: readonly number[]) => {
    batches.push([...items]);
    await new Promise((r) => setTimeout(r, ms));
    const err = fail?.(items);
    if (err) throw err;
    return items.map((i) => i * 10);
  };
  return { batches, run };
}

describe("groupCommit", () => {
  it("sends a lone item at once, and batches the items that arrive while statements are out", async () => {
    const { batches, run } = recorder(20);
    const call = groupCommit(run, { maxInFlight: 1 });
    expect(await call(1)).toBe(10);
    expect(batches).toEqual([[1]]);

    const first = call(2); // goes out alone
    await new Promise((r) => setTimeout(r, 5));
    const rest = [3, 4, 5, 6].map((i) => call(i)); // arrive while it is out: one batch after it
    expect(await Promise.all([first, ...rest])).toEqual([20, 30, 40, 50, 60]);
    expect(batches).toEqual([[1], [2], [3, 4, 5, 6]]);
    expect(call.stats).toMatchObject({ statements: 3, items: 6, largestBatch: 4, splits: 0 });
  });

  it("keeps at most maxInFlight statements out and at most maxBatch items in one", async () => {
    let out = 0;
    let most = 0;
    const call = groupCommit(
      async (items: readonly number[]) => {
        most = Math.max(most, ++out);
        await new Promise((r) => setTimeout(r, 5));
        out--;
        return items.map((i) => -i);
      },
      { maxInFlight: 2, maxBatch: 7 },
    );
    const items = Array.from({ length: 100 }, (_, i) => i);
    expect(await Promise.all(items.map((i) => call(i)))).toEqual(items.map((i) => -i));
    expect(most).toBe(2);
    expect(call.stats.largestBatch).toBe(7);
    expect(call.stats.statements).toBeGreaterThanOrEqual(Math.ceil(100 / 7));
  });

  it("lingerMs: an item within lingerMs of the one before waits lingerMs for company; one after a pause goes at once", async () => {
    // Fake timers (only setTimeout): the linger's wait and the stand-in statement's 1 ms move
    // when the test says so, so "at once" and "waited" cannot blur on a loaded machine. The
    // linger decision reads the injected clock.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const { batches, run } = recorder(1);
    const LINGER = 300;
    let clock = 0;
    const call = groupCommit(run, { lingerMs: LINGER, now: () => clock });

    // The first item, and one after a pause longer than lingerMs: each goes out at once, alone
    // (no time passes before its statement starts).
    const p1 = call(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(batches).toEqual([[1]]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await p1).toBe(10);
    clock = 1_000;
    const p2 = call(2);
    await vi.advanceTimersByTimeAsync(0);
    expect(batches).toEqual([[1], [2]]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await p2).toBe(20);

    // A steady stream 10 ms apart (< lingerMs): the item after 2 waits, and the items of the next
    // 300 ms join its batch instead of going out one by one.
    const at = (t: number, i: number) => {
      clock = t;
      return call(i);
    };
    const p3 = at(1_010, 3);
    await vi.advanceTimersByTimeAsync(10);
    const p4 = at(1_020, 4);
    await vi.advanceTimersByTimeAsync(10);
    const p5 = at(1_030, 5);
    await vi.advanceTimersByTimeAsync(LINGER - 21);
    expect(batches, "nothing goes out before the linger ends").toEqual([[1], [2]]);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches, "the linger ended: one batch").toEqual([[1], [2], [3, 4, 5]]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await Promise.all([p3, p4, p5])).toEqual([30, 40, 50]);
  });

  it("runs a failed batch again item by item, so only the bad item fails", async () => {
    const { batches, run } = recorder(1, (items) => (items.includes(13) ? new Error("bad item 13") : undefined));
    const reported: string[] = [];
    const call = groupCommit(run, { maxInFlight: 1, onStatement: (n, outcome) => reported.push(`${n} ${outcome}`) });
    const results = await Promise.allSettled([12, 13, 14].map((i) => call(i)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason).toHaveProperty("message", "bad item 13");
    // Handed in during one turn: one batch; it fails, so each item runs alone.
    expect(batches).toEqual([[12, 13, 14], [12], [13], [14]]);
    expect(call.stats.splits).toBe(1);
    expect(reported.sort()).toEqual(["1 failed", "1 ok", "1 ok", "3 split"]);
  });

  it("fails every item of a batch at once when Postgres is unreachable (no retry one by one)", async () => {
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    const { batches, run } = recorder(1, () => down);
    const call = groupCommit(run, { maxInFlight: 1 });
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => call(i)));
    expect(results.every((r) => r.status === "rejected" && r.reason === down)).toBe(true);
    expect(batches).toEqual([[1, 2, 3, 4]]);
    expect(call.stats.splits).toBe(0);
  });

  it("rejects when the statement answers for the wrong number of items", async () => {
    const call = groupCommit(async (items: readonly number[]) => items.slice(1));
    await expect(call(1)).rejects.toThrow(/0 results for 1 items/);
  });
});

describe("command transitions, batched (real Postgres)", () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => tdb?.drop());

  const green = policyFor("prep_pack.create", { risk_overrides: {}, policy_version: 0 }, 0, 3600);
  const red = policyFor("external_share.prepare", { risk_overrides: {}, policy_version: 0 }, 0, 3600);

  function message(
    t: Tenant,
    params: Record<string, unknown> = { n: 1 },
    commandId: string = randomUUID(),
  ): CommandMessage {
    return {
      v: 1,
      kind: "command",
      tenant: t,
      command_id: commandId,
      type: "prep_pack.create",
      context: {},
      params,
      correlation_id: `c-${commandId}`,
      accepted_at: new Date().toISOString(),
      principal: "user-1",
      body_hash: hashCanonical({ type: "prep_pack.create", context: {}, params }),
    };
  }

  it("records many commands in one statement, each as it would be alone (new, redelivered, reused id)", async () => {
    const t = uniqueTenant();
    const now = new Date();
    const seen = message(t);
    await receiveCommands(tdb.db, [{ m: seen, policy: green, now }]);
    const fresh = message(t);
    const held = { ...message(t), type: "external_share.prepare" };
    const reused = message(t, { n: 2 }, seen.command_id); // same id, another body
    const items: ReceiveItem[] = [
      { m: fresh, policy: green, now },
      { m: seen, policy: green, now },
      { m: held, policy: red, now },
      { m: reused, policy: green, now },
      { m: fresh, policy: green, now }, // the same message twice in one batch
    ];
    const r = await receiveCommands(tdb.db, items);
    expect(r.map((x) => x.kind)).toEqual(["inserted", "existing", "inserted", "conflict", "existing"]);
    expect(r[0]?.row).toMatchObject({ command_id: fresh.command_id, status: "running", attempts: 1 });
    expect(r[0]?.kind === "inserted" && r[0].effects.reports.map((p) => p.report.type)).toEqual([
      "command.accepted",
      "command.started",
    ]);
    expect(r[2]?.row).toMatchObject({ command_id: held.command_id, status: "accepted", attempts: 0 });
    expect(r[3]?.row.body_hash).toBe(seen.body_hash); // the first command stands
    const stored = await getCommand(tdb.db, t, fresh.command_id);
    expect(stored).toMatchObject({ status: "running", params: fresh.params, principal: "user-1" });
    expect(stored?.started_at?.getTime()).toBe(now.getTime());
  });

  it("records a command that already ran as done in one statement, with accepted, started and completed", async () => {
    const t = uniqueTenant();
    const startedAt = new Date(Date.now() - 20);
    const now = new Date();
    const quick = message(t);
    const held = { ...message(t), type: "external_share.prepare" };
    const [r, h] = await receiveCommands(tdb.db, [
      { m: quick, policy: green, now, done: { result: { summary: "ok" }, startedAt } },
      { m: held, policy: red, now, done: { result: { sent: true }, startedAt } }, // RED: never recorded as run
    ]);
    expect(r?.kind).toBe("inserted");
    expect(r?.kind === "inserted" && r.effects.reports.map((p) => p.report.type)).toEqual([
      "command.accepted",
      "command.started",
      "command.completed",
    ]);
    expect(h?.row).toMatchObject({ status: "accepted", result: null, started_at: null });
    const stored = await getCommand(tdb.db, t, quick.command_id);
    expect(stored).toMatchObject({ status: "done", attempts: 1, result: { summary: "ok" } });
    expect(stored?.started_at?.getTime()).toBe(startedAt.getTime());
    expect(stored?.finished_at?.getTime()).toBe(now.getTime());
  });

  it("restates accepted and started of a finished command only while they are inside the duplicate window", async () => {
    const t = uniqueTenant();
    const startedAt = new Date();
    const m = message(t);
    await receiveCommands(tdb.db, [{ m, policy: green, now: new Date(), done: { result: {}, startedAt } }]);
    const row = await getCommand(tdb.db, t, m.command_id);
    if (!row) throw new Error("no row");
    const types = (now?: Date) =>
      restateCommand(m, row, now ? { now, duplicateWindowMs: 120_000 } : undefined).reports.map((p) => p.report.type);
    // A redelivery soon after (the first delivery died between commit and publish): all three,
    // in order; whatever was stored already is dropped by its Nats-Msg-Id.
    expect(types(new Date(startedAt.getTime() + 30_000))).toEqual([
      "command.accepted",
      "command.started",
      "command.completed",
    ]);
    // Past the window a copy would be stored again after the outcome: the outcome only.
    expect(types(new Date(startedAt.getTime() + 116_000))).toEqual(["command.completed"]);
    expect(types()).toEqual(["command.completed"]);
    // A command that ran for minutes and just finished: its accepted and started left long ago.
    const ago = new Date(Date.now() - 200_000);
    const long = { ...row, accepted_at: ago, started_at: ago, finished_at: new Date() };
    const now = new Date();
    expect(restateCommand(m, long, { now, duplicateWindowMs: 120_000 }).reports.map((p) => p.report.type)).toEqual([
      "command.completed",
    ]);
    // A command that waited in the queue for minutes, then ran quickly: the worker published its
    // accepted (the gateway no longer does) just now, so it is restated with started.
    const queued = { ...row, accepted_at: ago, started_at: new Date(now.getTime() - 1000), finished_at: now };
    expect(restateCommand(m, queued, { now, duplicateWindowMs: 120_000 }).reports.map((p) => p.report.type)).toEqual([
      "command.accepted",
      "command.started",
      "command.completed",
    ]);
  });

  it("completes many commands in one statement; one that left running keeps its state", async () => {
    const t = uniqueTenant();
    const now = new Date();
    const a = message(t);
    const b = message(t);
    const c = { ...message(t), type: "external_share.prepare" }; // RED: accepted, never running
    await receiveCommands(tdb.db, [
      { m: a, policy: green, now },
      { m: b, policy: green, now },
      { m: c, policy: red, now },
    ]);
    const first = await completeCommands(tdb.db, [{ tenant: t, commandId: a.command_id, result: { ok: 1 }, now }]);
    expect(first[0]?.row?.status).toBe("done");
    const r = await completeCommands(tdb.db, [
      { tenant: t, commandId: a.command_id, result: { ok: 2 }, now }, // already done: unchanged
      { tenant: t, commandId: b.command_id, result: { ok: 3 }, now },
      { tenant: t, commandId: c.command_id, result: { ok: 4 }, now },
    ]);
    expect(r.map((x) => x.row?.status)).toEqual(["done", "done", "accepted"]);
    expect(r.map((x) => x.effects.reports.map((p) => p.report.type))).toEqual([
      ["command.completed"],
      ["command.completed"],
      [],
    ]);
    expect((await getCommand(tdb.db, t, a.command_id))?.result).toEqual({ ok: 1 });
    expect((await getCommand(tdb.db, t, b.command_id))?.result).toEqual({ ok: 3 });
  });

  it("a group commit over receiveCommands batches concurrent jobs and isolates a row Postgres refuses", async () => {
    const t = uniqueTenant();
    const now = new Date();
    const receive = groupCommit((items: readonly ReceiveItem[]) => receiveCommands(tdb.db, items), {
      maxInFlight: 1,
    });
    const good = Array.from({ length: 40 }, () => message(t));
    // jsonb refuses \u0000 in strings: this row fails its statement, alone after the split.
    const bad = message(t, { text: "nul \u0000 here" });
    const results = await Promise.allSettled([...good, bad].map((m) => receive({ m, policy: green, now })));
    expect(results.slice(0, 40).every((x) => x.status === "fulfilled" && x.value.kind === "inserted")).toBe(true);
    expect(results[40]?.status).toBe("rejected");
    expect(receive.stats.statements).toBeLessThan(41 + 2);
    expect(receive.stats.largestBatch).toBeGreaterThan(1);
    const n = await tdb.db
      .selectFrom("commands")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(40);
  });

  it("reads many commands' tenant settings and whether each is recorded in one statement", async () => {
    const a = uniqueTenant();
    const b = uniqueTenant();
    await tdb.db
      .insertInto("tenant_settings")
      .values({
        org_id: a.org_id,
        project_id: a.project_id,
        profile: JSON.stringify({ display_name: "Ada" }),
        persona: "{}",
        skin: "{}",
        compliance: JSON.stringify({ risk_overrides: { "prep_pack.create": "RED" } }),
        policy_version: 4,
      })
      .execute();
    const seen = message(a);
    await receiveCommands(tdb.db, [{ m: seen, policy: green, now: new Date() }]);
    const [ra, rb, ra2] = await readCommandContexts(tdb.db, [
      { tenant: a, commandId: seen.command_id },
      { tenant: b, commandId: seen.command_id }, // another tenant: not its command
      { tenant: a, commandId: randomUUID() },
    ]);
    expect(ra).toMatchObject({ recorded: true, settings: { profile: { display_name: "Ada" }, policy_version: 4 } });
    expect(ra?.settings.compliance.risk_overrides).toEqual({ "prep_pack.create": "RED" });
    expect(rb).toMatchObject({ recorded: false, settings: { profile: {}, policy_version: 0 } });
    expect(ra2?.recorded).toBe(false);
    expect(ra2?.settings).toEqual(ra?.settings);
  });
});

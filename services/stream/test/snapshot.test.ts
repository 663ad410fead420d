import { randomUUID } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import {
  applyReport,
  type CommandMessage,
  ReportEvent,
  type Snapshot,
  SnapshotEvent,
  type Tenant,
} from "@nexus/contracts";
import {
  applyAskEvent,
  commandBodyHash,
  completeCommand,
  completeExecution,
  type Effects,
  holdForApproval,
  planDecision,
  policyFor,
  progressPending,
  readSnapshot,
  receiveCommand,
  type SnapshotReader,
  startExecution,
  updateSettings,
  worklogEntry,
} from "@nexus/core";
import { publishEffects } from "@nexus/messaging";
import {
  createTestDatabase,
  natsForTest,
  type SseClient,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;
/** Work a test wants done inside the server's snapshot read: before and after the real DB read. */
let around: { before?: () => Promise<void>; after?: () => Promise<void> } = {};

const reader: SnapshotReader = async (db, t, opts) => {
  const hooks = around;
  around = {};
  await hooks.before?.();
  const s = await readSnapshot(db, t, opts);
  await hooks.after?.();
  return s;
};

beforeAll(async () => {
  nats = await natsForTest();
  tdb = await createTestDatabase();
  h = await startHarness({ nats, db: tdb, readSnapshot: reader });
});

afterAll(async () => {
  await h?.close();
  await tdb?.drop();
  await nats?.stop();
});

/**
 * A stand-in for the workers built from the real core transitions: each step commits its
 * transition first, then publishes the effects it returned (the order docs/architecture.md
 * invariant 6 relies on).
 */
function fakeWorker(t: Tenant, js: JetStreamClient) {
  const db = tdb.db;
  const publish = (e: Effects) => publishEffects(js, e);

  const message = (type: string): CommandMessage => {
    const params =
      type === "external_share.prepare"
        ? { recipient: "p@example.org", channel: "email", resource: { ref: "d", title: "D" } }
        : { brief: "hello" };
    return {
      v: 1,
      kind: "command",
      tenant: t,
      command_id: randomUUID(),
      type,
      context: {},
      params,
      correlation_id: `c-${randomUUID()}`,
      accepted_at: new Date().toISOString(),
      principal: "user-0",
      body_hash: commandBodyHash({ type, context: {}, params }),
    };
  };
  const policy = (risk: "GREEN" | "RED") => ({
    ...policyFor("draft_email.create", { risk_overrides: {}, policy_version: 0 }, 0, 3600),
    risk,
  });

  return {
    /** received (running) → a progress step → done, one step per call. */
    green() {
      const m = message("draft_email.create");
      return [
        async () => {
          const r = await receiveCommand(db, m, policy("GREEN"), new Date());
          if (r.kind === "inserted") await publish(r.effects);
        },
        async () => {
          const row = {
            org_id: t.org_id,
            project_id: t.project_id,
            command_id: m.command_id,
            correlation_id: m.correlation_id,
            type: m.type,
          };
          await publish({
            reports: [progressPending(row, "writing", 50, new Date())],
            notifications: [],
            messages: [],
          });
        },
        async () => {
          const done = await completeCommand(db, t, m.command_id, { subject: "Re: hello", body: "Thanks" }, new Date());
          await publish(done.effects);
        },
      ];
    },
    /** received (accepted) → ask open → approved → executed. */
    red() {
      const m = message("external_share.prepare");
      let askId = "";
      return [
        async () => {
          const r = await receiveCommand(db, m, policy("RED"), new Date());
          if (r.kind === "inserted") await publish(r.effects);
        },
        async () => {
          const r = await receiveCommand(db, m, policy("RED"), new Date());
          const held = await db
            .transaction()
            .execute((tx) =>
              holdForApproval(tx, r.row, { askId: randomUUID(), policy: policy("RED"), now: new Date() }),
            );
          askId = held.row.ask_id;
          await publish(held.effects);
        },
        async () => {
          const row = await db.selectFrom("asks").selectAll().where("ask_id", "=", askId).executeTakeFirstOrThrow();
          const plan = planDecision(row, null, {
            principal: "user-1",
            decision: "approve",
            correlationId: "c-decide",
            now: new Date(),
            allowSelfApproval: false,
          });
          if (plan.kind !== "append") throw new Error(`unexpected plan ${plan.kind}`);
          const applied = await db.transaction().execute((tx) => applyAskEvent(tx, plan.entry, 1, new Date()));
          if (applied.kind !== "unknown") await publish(applied.effects);
        },
        async () => {
          const start = await db.transaction().execute((tx) => startExecution(tx, t, askId, new Date()));
          if (start.kind !== "run") throw new Error(`unexpected execution start ${start.kind}`);
          const done = await db
            .transaction()
            .execute((tx) => completeExecution(tx, t, askId, { shared: true }, new Date()));
          await publish(done.effects);
        },
      ];
    },
  };
}

/** Runs every step list, interleaving them, each list in its own order. */
async function runInterleaved(lists: (() => Promise<void>)[][]): Promise<void> {
  await Promise.all(
    lists.map(async (steps) => {
      for (const s of steps) {
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        await s();
      }
    }),
  );
}

/** Snapshot + every later report, applied with the contract's `applyReport`. */
function stateOf(c: SseClient): Snapshot {
  const snap = SnapshotEvent.parse(c.named("snapshot")[0]?.data);
  return c.reports().reduce((s: Snapshot, r) => applyReport(s, ReportEvent.parse(r)), snap.snapshot);
}

/** What must agree between two snapshots: each command's status and each ask's status. */
const essence = (s: Snapshot) => ({
  worklog: Object.fromEntries(s.worklog.map((w) => [w.command_id, w.status])),
  asks: Object.fromEntries(s.asks.map((a) => [a.ask_id, a.status ?? "open"])),
  autopilot: s.autopilot,
});

async function freshSnapshot(t: Tenant): Promise<{ id: number; snapshot: Snapshot }> {
  const c = await h.open(t);
  await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "fresh snapshot");
  const e = c.named("snapshot")[0];
  c.close();
  return { id: Number(e?.id), snapshot: SnapshotEvent.parse(e?.data).snapshot };
}

describe("snapshot", () => {
  it("snapshot is consistent with its report_id: writes racing the snapshot read are never lost", async () => {
    const t = uniqueTenant("consist");
    const w = fakeWorker(t, h.js);
    // Some history before the connection.
    const early = [w.green(), w.red(), w.green()];
    await runInterleaved(early.map((s) => s.slice(0, 2)));

    // Deterministic race: work lands after the server read W but before its DB read (must be
    // re-applied harmlessly), and after its DB read (must come as reports above W).
    const midA = w.green();
    const midB = w.red();
    around = {
      before: async () => {
        await runInterleaved([midA.slice(0, 2), early[0]!.slice(2), midB.slice(0, 2)]);
      },
      after: async () => {
        await runInterleaved([midA.slice(2), early[1]!.slice(2), midB.slice(2), early[2]!.slice(2)]);
      },
    };
    const c = await h.open(t);
    await c.waitFor((es) => es.some((e) => e.event === "snapshot"), 5000, "snapshot");

    // And more concurrent work after the connection is live.
    const late = [w.green(), w.red(), w.green(), w.green()];
    await runInterleaved(late);

    const fresh = await freshSnapshot(t);
    await c.waitFor(
      () => c.reports().some((r) => Number(r.report_id) === fresh.id),
      5000,
      "reports up to the fresh snapshot",
    );
    expect(essence(stateOf(c))).toEqual(essence(fresh.snapshot));
    // sanity: the race really happened, the live state has every command in a final state
    expect(Object.values(essence(fresh.snapshot).worklog).every((s) => s === "done")).toBe(true);
    expect(Object.keys(essence(fresh.snapshot).worklog)).toHaveLength(9);
    c.close();
  });

  it("snapshots taken while workers run concurrently all converge to the final state", async () => {
    const t = uniqueTenant("conv");
    const w = fakeWorker(t, h.js);
    const lists = Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? w.red() : w.green()));
    const work = runInterleaved(lists);
    const clients: SseClient[] = [];
    for (let i = 0; i < 6; i++) {
      clients.push(await h.open(t));
      await new Promise((r) => setTimeout(r, 10));
    }
    await work;
    const fresh = await freshSnapshot(t);
    for (const c of clients) {
      await c.waitFor(
        (es) =>
          es.some((e) => e.event === "snapshot") &&
          (Number(es.find((e) => e.event === "snapshot")?.id) >= fresh.id ||
            c.reports().some((r) => Number(r.report_id) === fresh.id)),
        5000,
        "caught up",
      );
      expect(essence(stateOf(c))).toEqual(essence(fresh.snapshot));
      c.close();
    }
  });

  it("snapshot carries settings, worklog titles and autopilot from the database", async () => {
    const t = uniqueTenant("set");
    const o = { now: new Date(), correlationId: "c-settings" };
    await tdb.db.transaction().execute(async (trx) => {
      await updateSettings(trx, t, "profile", () => ({ display_name: "Kim", locale: "de-DE" }), o);
      await updateSettings(trx, t, "persona", () => ({ name: "Nex", tone: "friendly" }), o);
      await updateSettings(trx, t, "skin", () => ({ theme: "dark" }), o);
      await updateSettings(trx, t, "compliance", () => ({ risk_overrides: { "draft_email.create": "YELLOW" } }), o);
    });
    const w = fakeWorker(t, h.js);
    const g = w.green();
    await g[0]!();
    const r = w.red();
    await r[0]!();
    await r[1]!();
    const { snapshot } = await freshSnapshot(t);
    expect(snapshot.profile).toEqual({ display_name: "Kim", locale: "de-DE" });
    expect(snapshot.assistant).toEqual({ persona: { name: "Nex", tone: "friendly" }, skin: { theme: "dark" } });
    expect(snapshot.compliance.risk_overrides).toEqual({ "draft_email.create": "YELLOW" });
    expect(snapshot.compliance.policy_version).toBe(1);
    expect(snapshot.worklog.map((x) => x.status).sort()).toEqual(["running", "waiting_approval"]);
    expect(snapshot.worklog.find((x) => x.status === "running")?.title).toBe("Draft email running");
    expect(snapshot.settings_versions).toEqual({ profile: 4, persona: 4, skin: 4, compliance: 4 });
    expect(snapshot.asks).toHaveLength(1);
    expect(snapshot.asks[0]?.status).toBe("open");
    expect(snapshot.autopilot).toEqual({ status: "waiting_approval", in_flight: 1 });
  });

  it("worklogEntry maps a row's title, ISO time and optional fields", () => {
    const row = {
      command_id: "c1",
      type: "doc.summary.create",
      status: "done",
      updated_at: new Date("2026-02-03T09:00:00Z"),
      risk_level: "GREEN",
      correlation_id: "c-1",
      result: { summary: "x" },
      error: null,
      ask_id: null,
    } as unknown as Parameters<typeof worklogEntry>[0];
    expect(worklogEntry(row)).toEqual({
      command_id: "c1",
      type: "doc.summary.create",
      status: "done",
      title: "Document summary ready",
      updated_at: "2026-02-03T09:00:00.000Z",
      risk_level: "GREEN",
      correlation_id: "c-1",
      result: { summary: "x" },
    });
  });
});

import { randomUUID } from "node:crypto";
import {
  applyReport,
  type CommandMessage,
  ReportEvent,
  type Snapshot,
  SnapshotEvent,
  type Tenant,
} from "@nexus/contracts";
import {
  acceptedReport,
  actionHash,
  askCreatedReport,
  askDecidedReport,
  askExecutedReport,
  commandBodyHash,
  completeCommand,
  completedReport,
  createAsk,
  decideAsk,
  ensureTenant,
  holdCommandForAsk,
  insertCommand,
  type ReportPublisher,
  readSettings,
  startCommand,
  startedReport,
  transitionAsk,
  writeSection,
} from "@nexus/platform";
import {
  createTestDatabase,
  natsForTest,
  type SseClient,
  type TestDatabase,
  type TestNats,
  uniqueTenant,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSnapshot, type SnapshotReader, worklogEntry } from "../src/snapshot.ts";
import { type Harness, startHarness } from "./helpers.ts";

let nats: TestNats;
let tdb: TestDatabase;
let h: Harness;
/** Work a test wants done inside the server's snapshot read: before and after the real DB read. */
let around: { before?: () => Promise<void>; after?: () => Promise<void> } = {};

const reader: SnapshotReader = async (db, t) => {
  const hooks = around;
  around = {};
  await hooks.before?.();
  const s = await readSnapshot(db, t);
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
 * A stand-in for the workers: each step writes the database first, then publishes the report
 * carrying the entity's new state (the order ARCHITECTURE.md invariant 6 relies on).
 */
function fakeWorker(t: Tenant, pub: ReportPublisher) {
  const db = tdb.db;
  const publish = (
    entityId: string,
    step: string,
    report: Parameters<ReportPublisher["publish"]>[0]["report"],
    causality: { correlation_id: string; command_id?: string; ask_id?: string },
  ) => pub.publish({ tenant: t, entityId, step, report, causality, ts: new Date().toISOString() });

  const message = (type: string, risk: "GREEN" | "RED"): CommandMessage => ({
    v: 1,
    tenant: t,
    command_id: randomUUID(),
    type,
    context: {},
    params: { brief: "hello" },
    correlation_id: `c-${randomUUID()}`,
    risk_level: risk,
    policy_version: 0,
    ask_ttl_seconds: 3600,
    accepted_at: new Date().toISOString(),
    principal: "anonymous",
  });

  return {
    /** accepted → running → done, one step per call of the returned iterator. */
    green() {
      const m = message("draft_email.create", "GREEN");
      const cz = { correlation_id: m.correlation_id, command_id: m.command_id };
      return [
        async () => {
          await insertCommand(db, m, commandBodyHash(m));
          await publish(m.command_id, "accepted", acceptedReport(m), cz);
        },
        async () => {
          await startCommand(db, t, m.command_id, new Date());
          await publish(m.command_id, "started", startedReport(m), cz);
        },
        async () => {
          const result = { subject: "Re: hello", body: "Thanks" };
          await completeCommand(db, t, m.command_id, result, new Date());
          await publish(m.command_id, "completed", completedReport(m, result), cz);
        },
      ];
    },
    /** accepted → ask open → decided → executed. */
    red() {
      const m = message("external_share.prepare", "RED");
      const askId = randomUUID();
      const cz = { correlation_id: m.correlation_id, command_id: m.command_id, ask_id: askId };
      const action = { type: m.type, command_id: m.command_id, params: m.params };
      return [
        async () => {
          await insertCommand(db, m, commandBodyHash(m));
          await publish(m.command_id, "accepted", acceptedReport(m), cz);
        },
        async () => {
          const now = new Date();
          const { row } = await createAsk(db, {
            ask_id: askId,
            tenant: t,
            command_id: m.command_id,
            correlation_id: m.correlation_id,
            risk_level: "RED",
            action,
            action_hash: actionHash(action),
            policy_version: 0,
            expires_at: new Date(now.getTime() + 3600_000),
            now,
          });
          await holdCommandForAsk(db, t, m.command_id, askId, now);
          await publish(m.command_id, "ask", askCreatedReport(row, m.type), cz);
        },
        async () => {
          const row = await decideAsk(db, t, askId, {
            decision: "approve",
            decided_by: "user-1",
            note: null,
            correlation_id: "c-decide",
            now: new Date(),
          });
          if (row) await publish(askId, "decided", askDecidedReport(row), cz);
        },
        async () => {
          const now = new Date();
          await transitionAsk(db, t, askId, ["decided"], "executing", now);
          const row = await transitionAsk(db, t, askId, ["executing"], "done", now, { result: { shared: true } });
          await completeCommand(db, t, m.command_id, { shared: true }, now);
          if (row) await publish(askId, "executed", askExecutedReport(row, { shared: true }), cz);
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
    await ensureTenant(tdb.db, t);
    const w = fakeWorker(t, h.pub);
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
    await ensureTenant(tdb.db, t);
    const w = fakeWorker(t, h.pub);
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
    await ensureTenant(tdb.db, t);
    await tdb.db.transaction().execute(async (trx) => {
      await readSettings(trx, t, "update");
      await writeSection(trx, t, "profile", { display_name: "Kim", locale: "de-DE" });
      await writeSection(trx, t, "persona", { name: "Nex", tone: "friendly" });
      await writeSection(trx, t, "skin", { theme: "dark" });
      await writeSection(trx, t, "compliance", { risk_overrides: { "draft_email.create": "YELLOW" } });
    });
    const w = fakeWorker(t, h.pub);
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
    expect(snapshot.worklog.map((x) => x.status).sort()).toEqual(["accepted", "waiting_approval"]);
    expect(snapshot.worklog.find((x) => x.status === "accepted")?.title).toBe("Draft email accepted");
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

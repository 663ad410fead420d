/**
 * Idempotency and races (docs/architecture.md invariants 1 and 3; docs/contract.md "POST /sidecar/command"
 * and "POST /approvals/{ask_id}/decide"): the same command id with the same body is one command
 * however many requests race, also after the JetStream duplicate window; another body is 409;
 * the first decision on an ask wins whatever the interleaving, and its action runs at most once;
 * N-of-M approvals; expiry racing a decision.
 */
import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { ReportEvent, Tenant } from "@nexus/contracts";
import {
  reportTypesOf,
  stackForTest,
  type TestDatabase,
  type TestNats,
  type TestStack,
  tenantHeaders,
  tenantReports,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayHarness, startGateway } from "./harness.ts";

let nats: TestNats;
let database: TestDatabase;
let rig: TestStack;
let g: GatewayHarness;

const WINDOW_MS = 2000;

beforeAll(async () => {
  // A short duplicate window, so "after the window" is reachable in a test.
  rig = await stackForTest({
    topology: { duplicateWindowMs: WINDOW_MS },
    skip: ["gateway"],
    env: { LOG_LEVEL: "warn", EXPIRY_SWEEP_MS: "100", DUPLICATE_WINDOW_MS: String(WINDOW_MS) },
  });
  ({ nats, database } = rig);
  g = await startGateway({ nats, db: database, env: { DUPLICATE_WINDOW_MS: String(WINDOW_MS) } });
});
afterAll(async () => {
  await g?.close();
  await rig?.close();
});

const PREP = { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] };
const SHARE = { recipient: "partner@example.org", channel: "email", resource: { ref: "doc:1", title: "Q3" } };

async function post(t: Tenant, url: string, payload: object, method: "POST" | "PATCH" = "POST") {
  const r = await g.app.inject({ method, url, headers: tenantHeaders(t), payload });
  return { status: r.statusCode, body: r.json() };
}
const reports = (t: Tenant): Promise<ReportEvent[]> => tenantReports(jetstream(g.nc), t);
async function until(t: Tenant, what: string, check: (rs: ReportEvent[]) => boolean, ms = 15_000) {
  await waitFor(async () => check(await reports(t)), ms, what);
}

async function openAsk(t: Tenant): Promise<string> {
  const id = randomUUID();
  expect(
    (await post(t, "/sidecar/command", { command_id: id, type: "external_share.prepare", params: SHARE })).status,
  ).toBe(202);
  let askId = "";
  await until(t, "ask.created", (rs) => {
    askId = rs.find((x) => x.report.type === "ask.created" && x.causality.command_id === id)?.causality.ask_id ?? "";
    return askId !== "";
  });
  return askId;
}

describe("command idempotency", () => {
  it("20 identical requests in parallel → the same 202 each time, one command, run once", async () => {
    const t = uniqueTenant("idem-par");
    const body = {
      command_id: randomUUID(),
      type: "prep_pack.create",
      params: PREP,
      client_context: { correlation_id: "c-par" },
    };
    const answers = await Promise.all(Array.from({ length: 20 }, () => post(t, "/sidecar/command", body)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(202));
    for (const a of answers)
      expect(a.body).toMatchObject({
        accepted: true,
        status: "accepted",
        command_id: body.command_id,
        correlation_id: "c-par",
      });
    // every answer is the same 202 body
    expect(new Set(answers.map((a) => JSON.stringify(a.body))).size).toBe(1);
    await until(t, "completed", (rs) => reportTypesOf(rs, body.command_id).includes("command.completed"));
    await new Promise((r) => setTimeout(r, 500));
    expect(reportTypesOf(await reports(t), body.command_id)).toEqual([
      "command.accepted",
      "command.started",
      "command.completed",
    ]);
    const rows = await database.db
      .selectFrom("commands")
      .selectAll()
      .where("command_id", "=", body.command_id)
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]?.attempts).toBe(1);
  });

  it("10 different bodies with one command_id in parallel → exactly one is stored; every other gets 409", async () => {
    const t = uniqueTenant("idem-conf");
    const id = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        post(t, "/sidecar/command", {
          command_id: id,
          type: "prep_pack.create",
          params: { ...PREP, meeting_title: `M${i}` },
        }),
      ),
    );
    const ok = answers.filter((a) => a.status === 202);
    expect(ok).toHaveLength(1);
    expect(answers.filter((a) => a.status === 409).map((a) => a.body.error.code)).toEqual(
      Array(9).fill("IDEMPOTENCY_CONFLICT"),
    );
    await until(t, "completed", (rs) => reportTypesOf(rs, id).includes("command.completed"));
    const winner = answers.findIndex((a) => a.status === 202);
    const row = await database.db
      .selectFrom("commands")
      .selectAll()
      .where("command_id", "=", id)
      .executeTakeFirstOrThrow();
    expect((row.params as { meeting_title: string }).meeting_title).toBe(`M${winner}`);
  });

  it("after the duplicate window: the same body → the same 202 (no second run); another body → 409", async () => {
    const t = uniqueTenant("idem-window");
    const body = {
      command_id: randomUUID(),
      type: "prep_pack.create",
      params: PREP,
      client_context: { correlation_id: "c-first" },
    };
    expect((await post(t, "/sidecar/command", body)).status).toBe(202);
    await until(t, "completed", (rs) => reportTypesOf(rs, body.command_id).includes("command.completed"));
    await new Promise((r) => setTimeout(r, WINDOW_MS + 500));
    // A retry without a correlation id still gets the stored command's.
    const again = await post(t, "/sidecar/command", { ...body, client_context: {} });
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ command_id: body.command_id, correlation_id: "c-first" });
    expect(again.body.first_followup_report_id).toBeUndefined();
    const other = await post(t, "/sidecar/command", { ...body, params: { ...PREP, agenda: ["Other"] } });
    expect(other.status).toBe(409);
    await new Promise((r) => setTimeout(r, 1000));
    expect(reportTypesOf(await reports(t), body.command_id).filter((x) => x === "command.completed")).toHaveLength(1);
  });

  it("the legacy dialect is the same command as the canonical one (same id and body → 202, runs once)", async () => {
    const t = uniqueTenant("idem-legacy");
    const id = randomUUID();
    const canonical = await post(t, "/sidecar/command", { command_id: id, type: "echo.test", params: { a: 1 } });
    const legacy = await post(t, "/sidecar/command", { command_id: id, command_type: "echo.test", params: { a: 1 } });
    expect([canonical.status, legacy.status]).toEqual([202, 202]);
    expect(legacy.body.correlation_id).toBe(canonical.body.correlation_id);
    await until(t, "completed", (rs) => reportTypesOf(rs, id).includes("command.completed"));
  });
});

describe("decisions", () => {
  it("an approve and a reject racing on one ask: exactly one wins, the loser gets 409, the action runs at most once (12 rounds)", async () => {
    const t = uniqueTenant("race");
    for (let round = 0; round < 12; round++) {
      const askId = await openAsk(t);
      const [a, b] = await Promise.all([
        post(t, `/approvals/${askId}/decide`, { decision: "approve", correlation_id: `c-a${round}` }),
        post(t, `/approvals/${askId}/decide`, { decision: "reject", correlation_id: `c-r${round}` }),
      ]);
      const statuses = [a.status, b.status].sort();
      expect(statuses).toEqual([202, 409]);
      const approved = a.status === 202;
      const final = approved ? "ask.executed" : "ask.cancelled";
      await until(t, final, (rs) => rs.some((x) => x.report.type === final && x.causality.ask_id === askId));
      const shares = await database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();
      expect(shares).toHaveLength(approved ? 1 : 0);
      const types = (await reports(t)).filter((x) => x.causality.ask_id === askId).map((x) => x.report.type);
      expect(types.filter((x) => x === "ask.decided")).toHaveLength(1);
      expect(types.includes("ask.executed") && types.includes("ask.cancelled")).toBe(false);
    }
  });

  it("the same decision from many requests at once is one decision and one execution", async () => {
    const t = uniqueTenant("dec-par");
    const askId = await openAsk(t);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        post(t, `/approvals/${askId}/decide`, { decision: "approve", correlation_id: "c-same" }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(202));
    await until(t, "executed", (rs) =>
      rs.some((x) => x.report.type === "ask.executed" && x.causality.ask_id === askId),
    );
    await new Promise((r) => setTimeout(r, 500));
    const types = (await reports(t)).filter((x) => x.causality.ask_id === askId).map((x) => x.report.type);
    expect(types).toEqual(["ask.created", "ask.decided", "ask.executed"]);
  });

  it("N-of-M: with 2 approvals required the first keeps the ask open; a second distinct approver executes it once", async () => {
    const t = uniqueTenant("nofm");
    expect(
      (await post(t, "/compliance/settings", { approvals_required: { "external_share.prepare": 2 } }, "PATCH")).status,
    ).toBe(202);
    const askId = await openAsk(t);
    const created = (await reports(t)).find((x) => x.report.type === "ask.created" && x.causality.ask_id === askId);
    expect((created!.report as { ask: { approvals_required?: number } }).ask.approvals_required).toBe(2);
    const first = await g.app.inject({
      method: "POST",
      url: `/approvals/${askId}/decide`,
      headers: { ...tenantHeaders(t), "x-user-id": "alice" },
      payload: { decision: "approve", correlation_id: "c-alice" },
    });
    expect(first.statusCode).toBe(202);
    await until(t, "first ask.decided", (rs) =>
      rs.some((x) => x.report.type === "ask.decided" && x.causality.ask_id === askId),
    );
    await new Promise((r) => setTimeout(r, 500));
    let rs = (await reports(t)).filter((x) => x.causality.ask_id === askId);
    expect(rs.map((x) => x.report.type)).toEqual(["ask.created", "ask.decided"]);
    expect((rs[1]!.report as { ask: unknown }).ask).toMatchObject({
      decision: "approve",
      approvals: { have: 1, need: 2 },
      status: "open",
    });
    const ask = await database.db.selectFrom("asks").selectAll().where("ask_id", "=", askId).executeTakeFirstOrThrow();
    expect(ask.status).toBe("open");
    expect(await database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute()).toHaveLength(
      0,
    );
    // The same approver again is idempotent; a second distinct approver executes it.
    const same = await g.app.inject({
      method: "POST",
      url: `/approvals/${askId}/decide`,
      headers: { ...tenantHeaders(t), "x-user-id": "alice" },
      payload: { decision: "approve" },
    });
    expect(same.statusCode).toBe(202);
    const second = await g.app.inject({
      method: "POST",
      url: `/approvals/${askId}/decide`,
      headers: { ...tenantHeaders(t), "x-user-id": "bob" },
      payload: { decision: "approve", correlation_id: "c-bob" },
    });
    expect(second.statusCode).toBe(202);
    await until(t, "executed", (x) => x.some((y) => y.report.type === "ask.executed" && y.causality.ask_id === askId));
    rs = (await reports(t)).filter((x) => x.causality.ask_id === askId);
    expect(rs.map((x) => x.report.type)).toEqual(["ask.created", "ask.decided", "ask.decided", "ask.executed"]);
    expect(rs[3]?.causality.correlation_id).toBe("c-bob");
    expect(await database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute()).toHaveLength(
      1,
    );
  });

  it("expiry racing decisions: JetStream orders them, so an ask is either expired or decided, never both", async () => {
    const t = uniqueTenant("expiry-race");
    expect((await post(t, "/compliance/settings", { ask_ttl_seconds: 60 }, "PATCH")).status).toBe(202);
    const asks = await Promise.all(Array.from({ length: 6 }, () => openAsk(t)));
    // Move the asks' expiry to "now" so the sweeper (every 100 ms) races the decisions below.
    await database.db
      .updateTable("asks")
      .set({ expires_at: new Date(Date.now() + 150) })
      .where("ask_id", "in", asks)
      .execute();
    await new Promise((r) => setTimeout(r, 120));
    const answers = await Promise.all(asks.map((id) => post(t, `/approvals/${id}/decide`, { decision: "approve" })));
    await until(t, "every ask final", (rs) =>
      asks.every((id) =>
        rs.some(
          (x) => x.causality.ask_id === id && (x.report.type === "ask.executed" || x.report.type === "ask.expired"),
        ),
      ),
    );
    const rs = await reports(t);
    asks.forEach((id, i) => {
      const types = rs.filter((x) => x.causality.ask_id === id).map((x) => x.report.type);
      const executed = types.includes("ask.executed");
      const expired = types.includes("ask.expired");
      expect(executed !== expired).toBe(true);
      // The answer says which: 202 only when the decision won; 409 ASK_EXPIRED when expiry did.
      if (executed) expect(answers[i]?.status).toBe(202);
      else expect(answers[i]?.body.error?.code).toBe("ASK_EXPIRED");
    });
  });
});

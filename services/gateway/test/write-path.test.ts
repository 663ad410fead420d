/**
 * docs/architecture.md invariant 1 under injected faults: between every two steps of accept, decide
 * and settings a failure is injected — the publish refused by the server, its PubAck lost, the
 * Postgres connection killed — and the outcome is checked against the answer given:
 * 503 → it never takes effect, not even later; 504 → the same request again learns the outcome;
 * 202 → it takes effect exactly once. The workers and the stream service run as real processes;
 * the gateway runs in-process so the faults can be placed exactly.
 */
import { randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { errors } from "@nats-io/nats-core";
import { type ReportEvent, subjects, type Tenant } from "@nexus/contracts";
import type { JetStreamPublisher } from "@nexus/messaging";
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
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { FaultHook } from "../src/deps.ts";
import { type GatewayHarness, startGateway } from "./harness.ts";

let nats: TestNats;
let database: TestDatabase;
let rig: TestStack;
const opened: GatewayHarness[] = [];

beforeAll(async () => {
  rig = await stackForTest({ skip: ["gateway"], env: { LOG_LEVEL: "warn", EXPIRY_SWEEP_MS: "200" } });
  ({ nats, database } = rig);
});
// Each test's gateways close with it: every gateway runs the report-outbox relay over the one
// database, and a faulty one left open (one refuses every report publish) would lease a later
// test's outbox row and fail to publish it, holding it for the relay's 10 s lease.
afterEach(async () => {
  for (const g of opened.splice(0)) await g.close().catch(() => {});
});
afterAll(async () => {
  await rig?.close();
});

/** What to do with a publish, by how many publishes came before it (0-based) and its subject. */
type Rule = (subject: string, n: number) => "pass" | "refuse" | "lose-ack";

/**
 * A publisher that really refuses (the publish goes to a subject no stream captures, so the
 * server answers "no responders" and nothing is stored) or really loses the PubAck (the
 * message is stored, then a nats.js TimeoutError is thrown instead of the PubAck).
 */
function faulty(rule: Rule): (js: JetStreamPublisher) => JetStreamPublisher {
  let n = 0;
  return (js) => ({
    async publish(subject, payload, opts) {
      const what = rule(subject, n++);
      if (what === "refuse") return js.publish(`nexus.nowhere.${randomUUID()}`, payload, opts);
      const ack = await js.publish(subject, payload, opts);
      if (what === "lose-ack") throw new errors.TimeoutError();
      return ack;
    },
  });
}

/** The k-th publish whose subject starts with `prefix` gets `what`; every other one passes. */
function nth(prefix: string, k: number, what: "refuse" | "lose-ack"): Rule {
  let seen = 0;
  return (subject) => (subject.startsWith(prefix) && seen++ === k ? what : "pass");
}

async function gateway(o: { rule?: Rule; faults?: FaultHook } = {}): Promise<GatewayHarness> {
  const g = await startGateway({
    nats,
    db: database,
    ...(o.rule ? { wrap: faulty(o.rule) } : {}),
    ...(o.faults ? { faults: o.faults } : {}),
    env: { OUTBOX_POLL_MS: "200" },
  });
  opened.push(g);
  return g;
}

const PREP = { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] };
const SHARE = { recipient: "partner@example.org", channel: "email", resource: { ref: "doc:1", title: "Q3" } };

function command(type: string, params: Record<string, unknown>) {
  return {
    command_id: randomUUID(),
    type,
    params,
    client_context: { correlation_id: `c-${randomUUID().slice(0, 8)}` },
  };
}

async function post(g: GatewayHarness, t: Tenant, url: string, payload: unknown, method: "POST" | "PATCH" = "POST") {
  const r = await g.app.inject({ method, url, headers: tenantHeaders(t), payload: payload as object });
  return { status: r.statusCode, body: r.json() };
}

async function reports(t: Tenant): Promise<ReportEvent[]> {
  const g = opened[0] ?? (await gateway());
  return tenantReports(jetstream(g.nc), t);
}

async function until(t: Tenant, what: string, check: (rs: ReportEvent[]) => boolean, ms = 15_000) {
  await waitFor(async () => check(await reports(t)), ms, what);
}

/** Sends a control command after the one under test and waits until it completes: the worker
 * has by then processed whatever the stream held before it. */
async function settle(g: GatewayHarness, t: Tenant): Promise<void> {
  const control = command("echo.test", { control: true });
  expect((await post(g, t, "/sidecar/command", control)).status).toBe(202);
  await until(t, "control command", (rs) => reportTypesOf(rs, control.command_id).includes("command.completed"));
  await new Promise((r) => setTimeout(r, 500));
}

async function commandRows(commandId: string) {
  return database.db.selectFrom("commands").selectAll().where("command_id", "=", commandId).execute();
}

/** Creates a RED command's ask and returns its id. */
async function openAsk(g: GatewayHarness, t: Tenant): Promise<{ askId: string; commandId: string }> {
  const c = command("external_share.prepare", SHARE);
  expect((await post(g, t, "/sidecar/command", c)).status).toBe(202);
  let askId = "";
  await until(t, "ask.created", (rs) => {
    const r = rs.find((x) => x.report.type === "ask.created" && x.causality.command_id === c.command_id);
    askId = r?.causality.ask_id ?? "";
    return askId !== "";
  });
  return { askId, commandId: c.command_id };
}

async function shares(askId: string) {
  return database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();
}

describe("accept (POST /sidecar/command) under faults", () => {
  it("publish refused → 503, and the command never runs, not even later", async () => {
    const t = uniqueTenant("acc-refused");
    const g = await gateway({ rule: nth("nexus.cmd.", 0, "refuse") });
    const c = command("prep_pack.create", PREP);
    const r = await post(g, t, "/sidecar/command", c);
    expect(r.status).toBe(503);
    expect(r.body.error).toMatchObject({ code: "DEPENDENCY_UNAVAILABLE", recoverable: true, stage: "publish" });
    await settle(await gateway(), t);
    expect(reportTypesOf(await reports(t), c.command_id)).toEqual([]);
    expect(await commandRows(c.command_id)).toHaveLength(0);
    const stored = await g.deps.readLast("NEXUS_COMMANDS", subjects.command(t, c.command_id));
    expect(stored).toBeNull();
  });

  it("PubAck lost → 504 ACCEPT_UNCONFIRMED; the same request again learns 202, and the command runs once", async () => {
    const t = uniqueTenant("acc-lost");
    const g = await gateway({ rule: nth("nexus.cmd.", 0, "lose-ack") });
    const c = command("prep_pack.create", PREP);
    const first = await post(g, t, "/sidecar/command", c);
    expect(first.status).toBe(504);
    expect(first.body.error).toMatchObject({ code: "ACCEPT_UNCONFIRMED", recoverable: true });
    const again = await post(g, t, "/sidecar/command", c);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({
      accepted: true,
      command_id: c.command_id,
      correlation_id: c.client_context.correlation_id,
    });
    await until(t, "completed", (rs) => reportTypesOf(rs, c.command_id).includes("command.completed"));
    await settle(g, t);
    const types = reportTypesOf(await reports(t), c.command_id);
    expect(types.filter((x) => x === "command.completed")).toHaveLength(1);
    expect(types.filter((x) => x === "command.accepted")).toHaveLength(1);
    const rows = await commandRows(c.command_id);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.attempts).toBe(1);
  });

  it("PubAck lost, then the same command_id with another body → 409: the stored command stands", async () => {
    const t = uniqueTenant("acc-lost-409");
    const g = await gateway({ rule: nth("nexus.cmd.", 0, "lose-ack") });
    const c = command("prep_pack.create", PREP);
    expect((await post(g, t, "/sidecar/command", c)).status).toBe(504);
    const other = await post(g, t, "/sidecar/command", { ...c, params: { ...PREP, meeting_title: "Other" } });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("IDEMPOTENCY_CONFLICT");
    await until(t, "completed", (rs) => reportTypesOf(rs, c.command_id).includes("command.completed"));
    const row = (await commandRows(c.command_id))[0];
    expect((row!.params as { meeting_title: string }).meeting_title).toBe("Sync");
  });

  it("an accept is one publish, the command's: no report; the command-worker publishes command.accepted, once", async () => {
    const t = uniqueTenant("acc-one");
    const subjectsSeen: string[] = [];
    // Every report publish through the gateway is refused: an accept must not need one.
    const g = await gateway({
      rule: (subject) => {
        subjectsSeen.push(subject);
        return subject.startsWith("nexus.report.") ? "refuse" : "pass";
      },
    });
    const c = command("prep_pack.create", PREP);
    const r = await post(g, t, "/sidecar/command", c);
    expect(r.status).toBe(202);
    expect(r.body).toEqual({
      accepted: true,
      status: "accepted",
      command_id: c.command_id,
      correlation_id: c.client_context.correlation_id,
    });
    expect(subjectsSeen).toEqual([subjects.command(t, c.command_id)]);
    await until(t, "completed", (rs) => reportTypesOf(rs, c.command_id).includes("command.completed"));
    await settle(await gateway(), t);
    expect(reportTypesOf(await reports(t), c.command_id)).toEqual([
      "command.accepted",
      "command.started",
      "command.completed",
    ]);
  });
});

describe("decide (POST /approvals/{ask_id}/decide) under faults", () => {
  it("register write refused → 503; the ask stays open and never executes; a later approve executes once", async () => {
    const t = uniqueTenant("dec-refused");
    const plain = await gateway();
    const { askId } = await openAsk(plain, t);
    const g = await gateway({ rule: nth("nexus.approval.", 0, "refuse") });
    const r = await post(g, t, `/approvals/${askId}/decide`, { decision: "approve", correlation_id: "c-a1" });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe("DEPENDENCY_UNAVAILABLE");
    await settle(plain, t);
    expect((await reports(t)).filter((x) => x.causality.ask_id === askId).map((x) => x.report.type)).toEqual([
      "ask.created",
    ]);
    const ask = await database.db.selectFrom("asks").selectAll().where("ask_id", "=", askId).executeTakeFirstOrThrow();
    expect(ask.status).toBe("open");
    expect(await shares(askId)).toHaveLength(0);
    const ok = await post(plain, t, `/approvals/${askId}/decide`, { decision: "approve", correlation_id: "c-a2" });
    expect(ok.status).toBe(202);
    await until(t, "executed", (rs) =>
      rs.some((x) => x.report.type === "ask.executed" && x.causality.ask_id === askId),
    );
    expect(await shares(askId)).toHaveLength(1);
  });

  it("register PubAck lost → 504; the same decision again learns 202, and the action executes once", async () => {
    const t = uniqueTenant("dec-lost");
    const plain = await gateway();
    const { askId } = await openAsk(plain, t);
    const g = await gateway({ rule: nth("nexus.approval.", 0, "lose-ack") });
    const body = { decision: "approve", correlation_id: "c-lost", note: "ok" };
    const first = await post(g, t, `/approvals/${askId}/decide`, body);
    expect(first.status).toBe(504);
    expect(first.body.error.code).toBe("ACCEPT_UNCONFIRMED");
    const again = await post(g, t, `/approvals/${askId}/decide`, body);
    expect(again.status).toBe(202);
    expect(again.body.correlation_id).toBe("c-lost");
    await until(t, "executed", (rs) =>
      rs.some((x) => x.report.type === "ask.executed" && x.causality.ask_id === askId),
    );
    await settle(plain, t);
    const types = (await reports(t)).filter((x) => x.causality.ask_id === askId).map((x) => x.report.type);
    expect(types.filter((x) => x === "ask.executed")).toHaveLength(1);
    expect(types.filter((x) => x === "ask.decided")).toHaveLength(1);
    expect(await shares(askId)).toHaveLength(1);
  });

  it("ask.decided publish refused → 202 (the decision is stored); it executes once and ask.decided appears once", async () => {
    const t = uniqueTenant("dec-rep");
    const plain = await gateway();
    const { askId } = await openAsk(plain, t);
    const g = await gateway({ rule: nth("nexus.report.", 0, "refuse") });
    const r = await post(g, t, `/approvals/${askId}/decide`, { decision: "approve", correlation_id: "c-d" });
    expect(r.status).toBe(202);
    expect(r.body.first_followup_report_id).toBeUndefined();
    await until(t, "executed", (rs) =>
      rs.some((x) => x.report.type === "ask.executed" && x.causality.ask_id === askId),
    );
    await settle(plain, t);
    const types = (await reports(t)).filter((x) => x.causality.ask_id === askId).map((x) => x.report.type);
    expect(types).toEqual(["ask.created", "ask.decided", "ask.executed"]);
    expect(await shares(askId)).toHaveLength(1);
  });
});

describe("settings (PATCH /profile) under faults", () => {
  const kill: (step: string) => FaultHook = (at) => async (step, ctx) => {
    if (step !== at || !ctx?.trx) return;
    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(ctx.trx);
    await sql`select pg_terminate_backend(${rows[0]?.pid})`.execute(database.db);
  };
  const settingsReports = async (t: Tenant) => (await reports(t)).filter((x) => x.report.type === "settings.updated");
  const profile = async (t: Tenant) =>
    (
      await database.db
        .selectFrom("tenant_settings")
        .select("profile")
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .executeTakeFirst()
    )?.profile;

  it("the connection dies before the commit → 503; nothing changes and no settings.updated ever appears", async () => {
    const t = uniqueTenant("set-refused");
    const g = await gateway({ faults: kill("settings:in-transaction") });
    const r = await post(g, t, "/profile", { display_name: "Never" }, "PATCH");
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe("DEPENDENCY_UNAVAILABLE");
    await new Promise((res) => setTimeout(res, 1500)); // longer than the relay's poll and grace
    expect(await profile(t)).toBeUndefined();
    expect(await settingsReports(t)).toHaveLength(0);
    const outbox = await database.db.selectFrom("report_outbox").selectAll().where("org_id", "=", t.org_id).execute();
    expect(outbox).toHaveLength(0);
  });

  it("the connection dies during COMMIT → 504 (unknown); the same change again learns 202, reported once per stored version", async () => {
    const t = uniqueTenant("set-commit");
    const g = await gateway({ faults: kill("settings:before-commit") });
    const r = await post(g, t, "/profile", { display_name: "Kim" }, "PATCH");
    expect(r.status).toBe(504);
    expect(r.body.error.code).toBe("ACCEPT_UNCONFIRMED");
    const plain = await gateway();
    const again = await post(plain, t, "/profile", { display_name: "Kim" }, "PATCH");
    expect(again.status).toBe(202);
    expect((await profile(t)) as object).toMatchObject({ display_name: "Kim" });
    await waitFor(async () => (await settingsReports(t)).length >= 1, 5000, "settings.updated");
    const versions = (await settingsReports(t)).map((x) => (x.report as { version?: number }).version);
    expect(new Set(versions).size).toBe(versions.length);
  });

  for (const what of ["refuse", "lose-ack"] as const) {
    it(`settings.updated publish ${what === "refuse" ? "refused" : "PubAck lost"} → 202; the report appears exactly once (the relay publishes what was lost)`, async () => {
      const t = uniqueTenant(`set-${what}`);
      const g = await gateway({ rule: nth("nexus.report.", 0, what) });
      const r = await post(g, t, "/assistant/persona", { name: "Nex" }, "PATCH");
      expect(r.status).toBe(202);
      expect(r.body.first_followup_report_id).toBeUndefined();
      await waitFor(async () => (await settingsReports(t)).length === 1, 10_000, "settings.updated via the relay");
      await waitFor(
        async () =>
          (await database.db.selectFrom("report_outbox").selectAll().where("org_id", "=", t.org_id).execute())
            .length === 0,
        10_000,
        "outbox drained",
      );
      await new Promise((res) => setTimeout(res, 1000));
      const rs = await settingsReports(t);
      expect(rs).toHaveLength(1);
      expect(rs[0]?.report).toMatchObject({ section: "persona", values: { name: "Nex" }, version: 1 });
    });
  }
});

import { NexusApiError } from "@nexus/client";
import type { ErrorBody, Tenant } from "@nexus/contracts";
import { uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

let e: E2E;
beforeAll(async () => {
  e = await startE2E();
});
afterAll(async () => {
  await e?.close();
});

const SHARE = {
  recipient: "partner@example.org",
  channel: "email",
  resource: { ref: "doc:42", title: "Q3 plan" },
  message: "FYI",
};

/** Sends a RED command with the SDK and waits for its ask on the SDK's stream. */
async function shareAsk(t: Tenant) {
  const sse = await e.watch(t);
  const body = command("external_share.prepare", SHARE);
  const accepted = await e.client(t).sendCommand(body);
  expect(accepted.command_id).toBe(body.command_id);
  const created = await sse.waitForReport("ask.created", { command_id: body.command_id });
  return { sse, body, askId: created.report.ask.ask_id as string, created };
}

/** The rejection of a promise (the SDK throws NexusApiError for every non-2xx). */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => err as NexusApiError,
  );

describe("approvals end to end", () => {
  it("share → ask → approve → executed, once; the same decision again is idempotent", async () => {
    const t = uniqueTenant();
    const { sse, body, askId, created } = await shareAsk(t);
    expect(created.report.ask).toMatchObject({
      risk_level: "RED",
      action: { type: "external_share.prepare", params: SHARE },
    });
    expect(Date.parse(created.report.ask.expires_at)).toBeGreaterThan(Date.now());
    expect(sse.reports().some((x) => x.report.type === "command.started")).toBe(false);

    const c = e.client(t);
    const d = await c.approve(askId, { correlation_id: "c-approve", note: "ok" });
    expect(d).toMatchObject({
      accepted: true,
      correlation_id: "c-approve",
      first_followup_report_id: expect.any(String),
    });
    const decided = await sse.waitForReport("ask.decided", { ask_id: askId });
    expect(decided.report_id).toBe(d.first_followup_report_id);
    const executed = await sse.waitForReport("ask.executed", { ask_id: askId });
    expect(executed.causality).toMatchObject({
      correlation_id: "c-approve",
      command_id: body.command_id,
      ask_id: askId,
    });
    expect(executed.report.result).toMatchObject({ recipient: SHARE.recipient, channel: "email" });

    const again = await c.approve(askId, { correlation_id: "c-approve" });
    expect(again.first_followup_report_id).toBe(d.first_followup_report_id);
    const other = await failure(c.reject(askId));
    expect(other).toBeInstanceOf(NexusApiError);
    expect(other).toMatchObject({ status: 409, code: "ASK_ALREADY_DECIDED" });

    await new Promise((r) => setTimeout(r, 500));
    expect(sse.reports().filter((x) => x.report.type === "ask.executed")).toHaveLength(1);
    const rows = await e.database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();
    expect(rows).toHaveLength(1);
    const history = await e.database.db
      .selectFrom("action_history")
      .selectAll()
      .where("ask_id", "=", askId)
      .orderBy("id")
      .execute();
    expect(history.map((h) => h.event)).toEqual(["decided", "executed"]);
    expect(history[0]).toMatchObject({
      decision: "approve",
      executor_id: "anonymous",
      note: "ok",
      correlation_id: "c-approve",
    });
  });

  it("reject (older dialect: deny + reason) cancels and the action never runs", async () => {
    const t = uniqueTenant();
    const { sse, askId } = await shareAsk(t);
    // The older dialect on purpose: raw HTTP (the SDK sends `reject` and `note`).
    const d = await e.call("POST", `/approvals/${askId}/decide`, t, { decision: "deny", reason: "not now" });
    expect(d.status).toBe(202);
    await sse.waitForReport("ask.cancelled", { ask_id: askId });
    await new Promise((r) => setTimeout(r, 700));
    expect(sse.reports().filter((x) => x.report.type === "ask.executed")).toHaveLength(0);
    expect(
      await e.database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute(),
    ).toHaveLength(0);
    const h = await e.database.db
      .selectFrom("action_history")
      .selectAll()
      .where("ask_id", "=", askId)
      .orderBy("id")
      .execute();
    expect(h[0]).toMatchObject({ event: "decided", decision: "reject", note: "not now" });
  });

  it("404s unknown asks and other tenants' asks alike", async () => {
    const t = uniqueTenant();
    const { askId } = await shareAsk(t);
    const stranger = uniqueTenant();
    for (const [tenant, id] of [
      [stranger, askId],
      [t, "no-such-ask"],
      [t, "bad.id*"],
    ] as const) {
      const err = await failure(e.client(tenant).approve(id));
      expect(err).toMatchObject({ status: 404, code: "ASK_NOT_FOUND", attempts: 1 });
    }
    // A malformed decision on purpose: raw HTTP.
    const bad = await e.call<ErrorBody>("POST", `/approvals/${askId}/decide`, t, { decision: "maybe" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("VALIDATION_FAILED");
  });

  it("20 concurrent mixed decisions: one winner, at most one execution", async () => {
    const t = uniqueTenant();
    const { sse, askId } = await shareAsk(t);
    const decisions = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? "approve" : "reject"));
    const c = e.client(t);
    const answers = await Promise.allSettled(decisions.map((decision) => c.decide(askId, { decision })));
    const won = answers.map((a, i) => ({ a, d: decisions[i] })).filter((x) => x.a.status === "fulfilled");
    const lost = answers.flatMap((a) => (a.status === "rejected" ? [a.reason as NexusApiError] : []));
    expect(won.length + lost.length).toBe(20);
    expect(new Set(won.map((w) => w.d)).size).toBe(1);
    for (const l of lost) expect(l).toMatchObject({ status: 409, code: "ASK_ALREADY_DECIDED" });
    const winner = won[0]!.d;
    await sse.waitForReport(winner === "approve" ? "ask.executed" : "ask.cancelled", { ask_id: askId });
    await new Promise((r) => setTimeout(r, 500));
    expect(sse.reports().filter((x) => x.report.type === "ask.decided")).toHaveLength(1);
    expect(sse.reports().filter((x) => x.report.type === "ask.executed").length).toBeLessThanOrEqual(1);
    const h = await e.database.db
      .selectFrom("action_history")
      .selectAll()
      .where("ask_id", "=", askId)
      .where("event", "=", "decided")
      .execute();
    expect(h).toHaveLength(1);
  });

  it("a decision taken while the approval-worker is down executes exactly once after it restarts", async () => {
    const t = uniqueTenant();
    const { sse, askId } = await shareAsk(t);
    await e.stack.stop("approval-worker");
    const d = await e.client(t).approve(askId);
    expect(d.accepted).toBe(true);
    await sse.waitForReport("ask.decided", { ask_id: askId });
    expect(sse.reports().some((x) => x.report.type === "ask.executed")).toBe(false);
    await e.stack.start("approval-worker");
    await sse.waitForReport("ask.executed", { ask_id: askId }, 15_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(sse.reports().filter((x) => x.report.type === "ask.executed")).toHaveLength(1);
    expect(
      await e.database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute(),
    ).toHaveLength(1);
  });
});

describe("settings and the risk policy end to end", () => {
  it("each settings endpoint answers 202 and is confirmed by settings.updated", async () => {
    const t = uniqueTenant();
    const sse = await e.watch(t);
    const c = e.client(t);
    const profile = { display_name: "Kim", locale: "de-DE", timezone: "Europe/Berlin" };
    const persona = { name: "Nex", tone: "friendly" } as const;
    const skin = { theme: "dark", accent_color: "#3366ff" } as const;
    const compliance = { risk_overrides: { "draft_email.create": "YELLOW" as const }, ask_ttl_seconds: 3600 };
    const cases: [() => Promise<{ correlation_id: string; first_followup_report_id?: string }>, unknown, string][] = [
      [() => c.updateProfile(profile, { correlationId: "corr-profile" }), profile, "profile"],
      [() => c.updatePersona(persona, { correlationId: "corr-persona" }), persona, "persona"],
      [() => c.updateSkin(skin, { correlationId: "corr-skin" }), skin, "skin"],
      [() => c.updateCompliance(compliance, { correlationId: "corr-compliance" }), compliance, "compliance"],
    ];
    for (const [send, body, section] of cases) {
      const r = await send();
      expect(r).toMatchObject({ accepted: true, correlation_id: `corr-${section}` });
      const rep = await sse.waitForId(r.first_followup_report_id as string);
      expect(rep.report).toMatchObject({
        type: "settings.updated",
        section,
        values: expect.objectContaining(body as object),
      });
      expect(rep.causality.correlation_id).toBe(`corr-${section}`);
    }
    const bad = await failure(c.updateProfile({ timezone: "Mars/Olympus" }));
    expect(bad).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    // An unknown field on purpose: raw HTTP (the SDK's types would not allow it).
    const extra = await e.call("PATCH", "/assistant/skin", t, { colour: "red" });
    expect(extra.status).toBe(400);
    // a fresh connection's snapshot has all of it
    const snap = (await c.snapshot({ timeoutMs: 10_000 })).snapshot;
    expect(snap.profile.display_name).toBe("Kim");
    expect(snap.assistant.persona.name).toBe("Nex");
    expect(snap.assistant.skin.accent_color).toBe("#3366ff");
    expect(snap.compliance.risk_overrides["draft_email.create"]).toBe("YELLOW");
  });

  it("a risk override may raise a type but never lower it; YELLOW runs with risk.warning, raised RED waits for approval", async () => {
    const t = uniqueTenant();
    const sse = await e.watch(t);
    const c = e.client(t);
    const lower = await failure(c.updateCompliance({ risk_overrides: { "external_share.prepare": "GREEN" } }));
    expect(lower).toMatchObject({ status: 400, code: "RISK_LOWERING_FORBIDDEN" });
    expect(lower!.details![0]!.path).toBe("risk_overrides.external_share.prepare");

    const y = await c.updateCompliance({
      risk_overrides: { "prep_pack.create": "YELLOW", "doc.summary.create": "RED" },
    });
    await sse.waitForId(y.first_followup_report_id as string);

    const pp = command("prep_pack.create", { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] });
    await c.sendCommand(pp);
    const warn = await sse.waitForReport("risk.warning", { command_id: pp.command_id });
    expect(warn.report.risk_level).toBe("YELLOW");
    await sse.waitForReport("command.completed", { command_id: pp.command_id });

    const ds = command("doc.summary.create", { text: "One sentence here. Another sentence there. A third one." });
    await c.sendCommand(ds);
    const ask = await sse.waitForReport("ask.created", { command_id: ds.command_id });
    expect(
      sse.reports().some((x) => x.causality.command_id === ds.command_id && x.report.type === "command.started"),
    ).toBe(false);
    await c.approve(ask.report.ask.ask_id);
    const ex = await sse.waitForReport("ask.executed", { ask_id: ask.report.ask.ask_id }, 15_000);
    expect(ex.report.result.sentences.length).toBeGreaterThan(0);
  });

  it("stores the profile photo by its bytes: PNG accepted and served, text refused with 415", async () => {
    const t = uniqueTenant();
    const sse = await e.watch(t);
    const c = e.client(t);
    // 1×1 PNG, under a misleading name: the type comes from the bytes
    const png = Buffer.from(
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
      "base64",
    );
    const body = await c.uploadPhoto(new Uint8Array(png), "me.txt");
    const rep = await sse.waitForId(body.first_followup_report_id as string);
    expect(rep.report.values.photo).toMatchObject({ content_type: "image/png", bytes: png.length });
    const img = await fetch(`${e.stack.gatewayUrl}${rep.report.values.photo.url}`);
    expect(img.status).toBe(200);
    expect(img.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await img.arrayBuffer()).equals(png)).toBe(true);

    const bad = await failure(
      c.uploadPhoto(new Blob([Buffer.from("hello, not an image")], { type: "image/png" }), "me.png"),
    );
    expect(bad).toMatchObject({ status: 415, code: "UNSUPPORTED_MEDIA_TYPE" });
  });
});

import type { Tenant } from "@nexus/contracts";
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

async function shareAsk(t: Tenant) {
  const sse = await e.stream(t);
  const body = command("external_share.prepare", SHARE);
  const r = await e.call("POST", "/sidecar/command", t, body);
  expect(r.status).toBe(202);
  const created = await sse.waitForReport("ask.created", { command_id: body.command_id });
  return { sse, body, askId: created.report.ask.ask_id as string, created };
}

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

    const d = await e.call("POST", `/approvals/${askId}/decide`, t, {
      decision: "approve",
      correlation_id: "c-approve",
      note: "ok",
    });
    expect(d.status).toBe(202);
    expect(d.body).toMatchObject({
      accepted: true,
      correlation_id: "c-approve",
      first_followup_report_id: expect.any(String),
    });
    const decided = await sse.waitForReport("ask.decided", { ask_id: askId });
    expect(decided.report_id).toBe(d.body.first_followup_report_id);
    const executed = await sse.waitForReport("ask.executed", { ask_id: askId });
    expect(executed.causality).toMatchObject({
      correlation_id: "c-approve",
      command_id: body.command_id,
      ask_id: askId,
    });
    expect(executed.report.result).toMatchObject({ recipient: SHARE.recipient, channel: "email" });

    const again = await e.call("POST", `/approvals/${askId}/decide`, t, {
      decision: "approve",
      correlation_id: "c-approve",
    });
    expect(again.status).toBe(202);
    expect(again.body.first_followup_report_id).toBe(d.body.first_followup_report_id);
    const other = await e.call("POST", `/approvals/${askId}/decide`, t, { decision: "reject" });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("ASK_ALREADY_DECIDED");

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
      const r = await e.call("POST", `/approvals/${id}/decide`, tenant, { decision: "approve" });
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe("ASK_NOT_FOUND");
    }
    const bad = await e.call("POST", `/approvals/${askId}/decide`, t, { decision: "maybe" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("VALIDATION_FAILED");
  });

  it("20 concurrent mixed decisions: one winner, at most one execution", async () => {
    const t = uniqueTenant();
    const { sse, askId } = await shareAsk(t);
    const decisions = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? "approve" : "reject"));
    const answers = await Promise.all(
      decisions.map((decision) => e.call("POST", `/approvals/${askId}/decide`, t, { decision })),
    );
    const won = answers.map((a, i) => ({ a, d: decisions[i] })).filter((x) => x.a.status === 202);
    const lost = answers.filter((a) => a.status === 409);
    expect(won.length + lost.length).toBe(20);
    expect(new Set(won.map((w) => w.d)).size).toBe(1);
    for (const l of lost) expect(l.body.error.code).toBe("ASK_ALREADY_DECIDED");
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
    const d = await e.call("POST", `/approvals/${askId}/decide`, t, { decision: "approve" });
    expect(d.status).toBe(202);
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
    const sse = await e.stream(t);
    const cases: [string, string, unknown, string][] = [
      ["PATCH", "/profile", { display_name: "Kim", locale: "de-DE", timezone: "Europe/Berlin" }, "profile"],
      ["PATCH", "/assistant/persona", { name: "Nex", tone: "friendly" }, "persona"],
      ["PATCH", "/assistant/skin", { theme: "dark", accent_color: "#3366ff" }, "skin"],
      [
        "PATCH",
        "/compliance/settings",
        { risk_overrides: { "draft_email.create": "YELLOW" }, ask_ttl_seconds: 3600 },
        "compliance",
      ],
    ];
    for (const [method, path, body, section] of cases) {
      const r = await e.call(method, path, t, body, { "x-correlation-id": `corr-${section}` });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      expect(r.body).toMatchObject({ accepted: true, correlation_id: `corr-${section}` });
      await sse.waitFor((ev) => ev.some((x) => x.id === r.body.first_followup_report_id), 10_000, section);
      const rep = sse.named("report").find((x) => x.id === r.body.first_followup_report_id)!.data;
      expect(rep.report).toMatchObject({
        type: "settings.updated",
        section,
        values: expect.objectContaining(body as object),
      });
    }
    const bad = await e.call("PATCH", "/profile", t, { timezone: "Mars/Olympus" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("VALIDATION_FAILED");
    const extra = await e.call("PATCH", "/assistant/skin", t, { colour: "red" });
    expect(extra.status).toBe(400);
    // a fresh connection's snapshot has all of it
    const fresh = await e.stream(t);
    await fresh.waitFor((ev) => ev.some((x) => x.event === "snapshot"));
    const snap = fresh.named("snapshot")[0]!.data.snapshot;
    expect(snap.profile.display_name).toBe("Kim");
    expect(snap.assistant.persona.name).toBe("Nex");
    expect(snap.assistant.skin.accent_color).toBe("#3366ff");
    expect(snap.compliance.risk_overrides["draft_email.create"]).toBe("YELLOW");
  });

  it("a risk override may raise a type but never lower it; YELLOW runs with risk.warning, raised RED waits for approval", async () => {
    const t = uniqueTenant();
    const sse = await e.stream(t);
    const lower = await e.call("PATCH", "/compliance/settings", t, {
      risk_overrides: { "external_share.prepare": "GREEN" },
    });
    expect(lower.status).toBe(400);
    expect(lower.body.error.code).toBe("RISK_LOWERING_FORBIDDEN");
    expect(lower.body.error.details[0].path).toBe("risk_overrides.external_share.prepare");

    const y = await e.call("PATCH", "/compliance/settings", t, {
      risk_overrides: { "prep_pack.create": "YELLOW", "doc.summary.create": "RED" },
    });
    expect(y.status).toBe(202);
    await sse.waitFor((ev) => ev.some((x) => x.id === y.body.first_followup_report_id));

    const pp = command("prep_pack.create", { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] });
    await e.call("POST", "/sidecar/command", t, pp);
    const warn = await sse.waitForReport("risk.warning", { command_id: pp.command_id });
    expect(warn.report.risk_level).toBe("YELLOW");
    await sse.waitForReport("command.completed", { command_id: pp.command_id });

    const ds = command("doc.summary.create", { text: "One sentence here. Another sentence there. A third one." });
    await e.call("POST", "/sidecar/command", t, ds);
    const ask = await sse.waitForReport("ask.created", { command_id: ds.command_id });
    expect(
      sse.reports().some((x) => x.causality.command_id === ds.command_id && x.report.type === "command.started"),
    ).toBe(false);
    await e.call("POST", `/approvals/${ask.report.ask.ask_id}/decide`, t, { decision: "approve" });
    const ex = await sse.waitForReport("ask.executed", { ask_id: ask.report.ask.ask_id }, 15_000);
    expect(ex.report.result.sentences.length).toBeGreaterThan(0);
  });

  it("stores the profile photo by its bytes: PNG accepted and served, text refused with 415", async () => {
    const t = uniqueTenant();
    const sse = await e.stream(t);
    // 1×1 PNG
    const png = Buffer.from(
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
      "base64",
    );
    const form = new FormData();
    form.append("photo", new Blob([png], { type: "application/octet-stream" }), "me.txt");
    const r = await fetch(`${e.stack.gatewayUrl}/profile/photo`, {
      method: "POST",
      body: form,
      headers: { "x-org-id": t.org_id, "x-project-id": t.project_id },
    });
    expect(r.status).toBe(202);
    const body = (await r.json()) as any;
    await sse.waitFor((ev) => ev.some((x) => x.id === body.first_followup_report_id));
    const rep = sse.named("report").find((x) => x.id === body.first_followup_report_id)!.data;
    expect(rep.report.values.photo).toMatchObject({ content_type: "image/png", bytes: png.length });
    const img = await fetch(`${e.stack.gatewayUrl}${rep.report.values.photo.url}`);
    expect(img.status).toBe(200);
    expect(img.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await img.arrayBuffer()).equals(png)).toBe(true);

    const text = new FormData();
    text.append("photo", new Blob([Buffer.from("hello, not an image")], { type: "image/png" }), "me.png");
    const bad = await fetch(`${e.stack.gatewayUrl}/profile/photo`, {
      method: "POST",
      body: text,
      headers: { "x-org-id": t.org_id, "x-project-id": t.project_id },
    });
    expect(bad.status).toBe(415);
    expect(((await bad.json()) as any).error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
});

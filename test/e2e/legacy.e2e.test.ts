/**
 * Compatibility with the earlier backend (docs/contract.md "Compatibility with the earlier
 * backend"): each documented example is sent verbatim, as raw JSON over HTTP, and must get a
 * 202 — or, where it no longer fits, a 400 whose `details` name exactly the field to change.
 *
 * The examples are the request bodies the earlier backend's contract and walkthrough documented
 * (the canonical command, its `{command_type, params, correlation_id}` dialect, `echo.test`, the
 * RED share, decisions with `deny` / `reason`). The results are read with the SDK's stream.
 */
import type { CommandAccepted, DecisionAccepted, ErrorBody } from "@nexus/contracts";
import { uniqueTenant } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2E, startE2E } from "./fixture.ts";

let e: E2E;
beforeAll(async () => {
  e = await startE2E();
});
afterAll(async () => {
  await e?.close();
});

/** The earlier contract's command example, verbatim. */
const CANONICAL = `{
  "command_id": "5b2f6c1e-8f0a-4c55-9d0e-2a1c3e4f5a6b",
  "type": "draft_email.create",
  "context": { "ref": "mail:thread/123", "title": "Reply to vendor" },
  "params": { "to": "kim@example.com", "brief": "Politely decline the offer" },
  "client_context": { "surface": "sidecar", "correlation_id": "c-001" }
}`;

/** The older clients' dialect with the diagnostic command, verbatim. */
const LEGACY_ECHO = `{"command_type": "echo.test", "params": {"hello": "world", "n": 1}, "correlation_id": "c-legacy"}`;

/** The RED example of the walkthrough, verbatim (no command_id: the gateway generates one). */
const RED_SHARE = `{
  "type": "external_share.prepare",
  "params": { "recipient": "partner@example.org", "channel": "email",
              "resource": { "ref": "doc:42", "title": "Q3 plan" }, "message": "FYI" },
  "client_context": { "correlation_id": "c-share" } }`;

/** POSTs `raw` as `t`; `B` is the body the test expects back (not checked). */
const post = <B = unknown>(t: ReturnType<typeof uniqueTenant>, path: string, raw: string) =>
  e.call<B>("POST", path, t, raw);

describe("the earlier backend's examples, verbatim", () => {
  it("the canonical command example: 202 with status accepted, then a draft", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const r = await post<CommandAccepted>(t, "/sidecar/command", CANONICAL);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toMatchObject({
      accepted: true,
      status: "accepted",
      command_id: "5b2f6c1e-8f0a-4c55-9d0e-2a1c3e4f5a6b",
      correlation_id: "c-001",
    });
    const done = await w.waitForReport("command.completed", { command_id: r.body.command_id }, 15_000);
    expect(done.report.result.body).toMatch(/Kim/);
  });

  it("the legacy dialect with echo.test: 202, and the result echoes the params", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const r = await post<CommandAccepted>(t, "/sidecar/command", LEGACY_ECHO);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toMatchObject({ accepted: true, status: "accepted", correlation_id: "c-legacy" });
    const done = await w.waitForReport("command.completed", { command_id: r.body.command_id });
    expect(done.report.result).toEqual({ echo: { hello: "world", n: 1 } });
    expect(done.causality.correlation_id).toBe("c-legacy");
  });

  it("the RED share example: 202, an ask; the decision examples approve it, or reject it as deny + reason", async () => {
    for (const decision of [
      `{ "decision": "approve", "correlation_id": "c-002", "note": "ok to send" }`,
      `{ "decision": "deny", "reason": "not now" }`,
    ]) {
      const t = uniqueTenant();
      const w = await e.watch(t);
      const r = await post<CommandAccepted>(t, "/sidecar/command", RED_SHARE);
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      expect(r.body).toMatchObject({ status: "accepted", correlation_id: "c-share" });
      const ask = await w.waitForReport("ask.created", { command_id: r.body.command_id });
      const d = await post<DecisionAccepted>(t, `/approvals/${ask.report.ask.ask_id}/decide`, decision);
      expect(d.status, JSON.stringify(d.body)).toBe(202);
      expect(d.body.status).toBe("accepted");
      const outcome = decision.includes("approve") ? "ask.executed" : "ask.cancelled";
      await w.waitForReport(outcome, { ask_id: ask.report.ask.ask_id }, 15_000);
    }
  });
});

describe("what no longer fits gets a 400 that names the change", () => {
  // Shapes an older client may still send; each answer must point at the field to change.
  const cases: { name: string; raw: string; path: string; code: string; issue: RegExp }[] = [
    {
      name: "a command type the registry does not know",
      raw: `{"command_type": "email.draft", "params": {"brief": "Decline"}, "correlation_id": "c-x"}`,
      path: "type",
      code: "UNKNOWN_COMMAND_TYPE",
      issue: /must be one of .*draft_email\.create/,
    },
    {
      name: "a share without its resource and channel",
      raw: `{"command_type": "external_share.prepare", "params": {"recipient": "partner@example.org", "doc_id": "doc:42"}}`,
      path: "params.resource",
      code: "VALIDATION_FAILED",
      issue: /expected object/,
    },
    {
      name: "a body with neither type nor command_type",
      raw: `{"command": "echo.test", "params": {}}`,
      path: "type",
      code: "VALIDATION_FAILED",
      issue: /expected string/,
    },
  ];
  for (const c of cases)
    it(`${c.name}: ${c.code} at ${c.path}`, async () => {
      const t = uniqueTenant();
      const r = await post<ErrorBody>(t, "/sidecar/command", c.raw);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe(c.code);
      expect(r.body.error.recoverable).toBe(false);
      const detail = (r.body.error.details as { path: string; issue: string }[]).find((d) => d.path === c.path);
      expect(detail, JSON.stringify(r.body.error.details)).toBeDefined();
      expect(detail!.issue).toMatch(c.issue);
    });

  it("a decision word the contract does not know: VALIDATION_FAILED naming the accepted ones", async () => {
    const t = uniqueTenant();
    const w = await e.watch(t);
    const r = await post<CommandAccepted>(t, "/sidecar/command", RED_SHARE);
    const ask = await w.waitForReport("ask.created", { command_id: r.body.command_id });
    const d = await post<ErrorBody>(t, `/approvals/${ask.report.ask.ask_id}/decide`, `{ "decision": "approved" }`);
    expect(d.status).toBe(400);
    expect(d.body.error.code).toBe("VALIDATION_FAILED");
    const detail = (d.body.error.details as { path: string; issue: string }[])[0]!;
    expect(detail.path).toBe("body.decision");
    expect(detail.issue).toMatch(/approve.*reject/);
  });
});

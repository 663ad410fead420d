/**
 * docs/architecture.md invariant 1 with real process deaths: the gateway kills itself (SIGKILL)
 * between two steps of accept, decide and settings (`FAULT_INJECT_CRASH_AT`). The client gets
 * no answer; repeating the request after a restart learns the outcome, and whatever was stored
 * takes effect exactly once — nothing is lost, nothing runs twice.
 */
import { uniqueTenant, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

let e: E2E;
beforeAll(async () => {
  e = await startE2E({ env: { OUTBOX_POLL_MS: "200" } });
});
afterAll(async () => {
  await e?.close();
});

const SHARE = { recipient: "partner@example.org", channel: "email", resource: { ref: "doc:1", title: "Q3" } };

/** Restarts the gateway so that it kills itself at `step`, sends one request (which gets no answer), then restarts it normally. */
async function crashingAt(step: string, request: () => Promise<unknown>): Promise<void> {
  await e.stack.stop("gateway");
  await e.stack.start("gateway", { FAULT_INJECT_CRASH_AT: step });
  await expect(request()).rejects.toThrow();
  await e.stack.stop("gateway");
  await e.stack.start("gateway");
}

describe("the gateway killed mid-request", () => {
  for (const step of ["accept:before-command-publish", "accept:after-command-publish"]) {
    it(`${step}: the repeated request answers 202 and the command runs exactly once`, async () => {
      const t = uniqueTenant();
      const body = command("prep_pack.create", { meeting_title: "Sync", attendees: ["Kim"], agenda: ["News"] });
      await crashingAt(step, () => e.call("POST", "/sidecar/command", t, body));
      const again = await e.call("POST", "/sidecar/command", t, body);
      expect(again.status).toBe(202);
      expect(again.body).toMatchObject({
        command_id: body.command_id,
        correlation_id: body.client_context.correlation_id,
      });
      const sse = await e.stream(t, { query: { cursor: "0" } });
      await sse.waitForReport("command.completed", { command_id: body.command_id }, 15_000);
      await new Promise((r) => setTimeout(r, 1000));
      const mine = sse
        .reports()
        .filter((x) => x.causality.command_id === body.command_id)
        .map((x) => x.report.type);
      expect(mine).toEqual(["command.accepted", "command.started", "command.completed"]);
    });
  }

  it("decide:after-register-write: the decision was stored; repeating it answers 202 and the share executes once", async () => {
    const t = uniqueTenant();
    const sse = await e.stream(t);
    const c = command("external_share.prepare", SHARE);
    expect((await e.call("POST", "/sidecar/command", t, c)).status).toBe(202);
    const created = await sse.waitForReport("ask.created", { command_id: c.command_id });
    const askId = created.causality.ask_id as string;
    const decision = { decision: "approve", correlation_id: "c-crash" };
    await crashingAt("decide:after-register-write", () => e.call("POST", `/approvals/${askId}/decide`, t, decision));
    sse.close(); // the restarts ended it; read everything again from the start
    const again = await e.call("POST", `/approvals/${askId}/decide`, t, decision);
    expect(again.status).toBe(202);
    const replay = await e.stream(t, { query: { cursor: "0" } });
    await replay.waitForReport("ask.executed", { ask_id: askId }, 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    const mine = replay
      .reports()
      .filter((x) => x.causality.ask_id === askId)
      .map((x) => x.report.type);
    expect(mine).toEqual(["ask.created", "ask.decided", "ask.executed"]);
    const shares = await e.database.db.selectFrom("share_outbox").selectAll().where("ask_id", "=", askId).execute();
    expect(shares).toHaveLength(1);
  });

  it("settings:after-commit: the change was committed; the restarted gateway's relay publishes its settings.updated", async () => {
    const t = uniqueTenant();
    await crashingAt("settings:after-commit", () => e.call("PATCH", "/profile", t, { display_name: "Kim" }));
    const sse = await e.stream(t, { query: { cursor: "0" } });
    await waitFor(() => sse.reports().some((x) => x.report.type === "settings.updated"), 15_000, "settings.updated");
    const updated = sse.reports().filter((x) => x.report.type === "settings.updated");
    expect(updated).toHaveLength(1);
    expect(updated[0]?.report).toMatchObject({ section: "profile", values: { display_name: "Kim" } });
  });
});

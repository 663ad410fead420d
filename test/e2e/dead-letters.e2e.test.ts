/**
 * Dead-letter operations end to end, on the four-process stack: a command whose retries are
 * spent is dead-lettered and held; an admin lists, inspects and requeues it through the gateway
 * (or `pnpm dlq`), and the command-worker runs it again once; poison is an alarm; what cannot run
 * again is refused; another tenant sees nothing; non-admins are refused.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { jetstream } from "@nats-io/jetstream";
import type { DeadLetterSummary } from "@nexus/client";
import { type ErrorBody, type ReportEvent, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { connectNats } from "@nexus/messaging";
import { REPO_ROOT, reportTypesOf, tenantReports, uniqueTenant, waitFor } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

let e2e: E2E;
const admin = { "x-roles": "admin" };

beforeAll(async () => {
  e2e = await startE2E({
    serviceEnv: {
      "command-worker": {
        FAULT_INJECT_FAIL_TYPES: "echo.test",
        MAX_ATTEMPTS: "2",
        RETRY_BASE_MS: "10",
        RETRY_MAX_MS: "20",
        // Held for the operator (nothing requeues itself here); poison is an alarm (the default).
        AUTO_REQUEUE_FAILURE_CODES: "none",
      },
    },
  });
});
afterAll(async () => {
  await e2e?.close();
});

/** The tenant's stored reports (read as the `operator` NATS user). */
async function reports(t: Tenant): Promise<ReportEvent[]> {
  const nc = await connectNats({
    url: e2e.nats.url,
    name: "reports",
    logger: pino({ level: "silent" }),
    auth: e2e.nats.users!.operator,
  });
  try {
    return await tenantReports(jetstream(nc), t);
  } finally {
    await nc.close();
  }
}

/** The report types of one command, in order. */
const reportTypes = async (t: Tenant, commandId: string) => reportTypesOf(await reports(t), commandId);

async function waitForReport(t: Tenant, commandId: string, type: string, count = 1) {
  await waitFor(
    async () => (await reportTypes(t, commandId)).filter((x) => x === type).length >= count,
    20_000,
    `${type} ×${count}`,
  );
}

/** A dead letter as `GET /admin/dead-letters` lists it: the SDK's summary, with `source` and `disposition`. */
type ListedDeadLetter = DeadLetterSummary & { source: string; disposition: string };
const list = (t: Tenant, q = "", headers = admin) =>
  e2e.call<{ dead_letters: ListedDeadLetter[]; next_before: string | null }>(
    "GET",
    `/admin/dead-letters${q}`,
    t,
    undefined,
    headers,
  );

describe("dead letters end to end", () => {
  it("a command whose retries are spent is held; an admin lists, inspects and requeues it, and it runs again once", async () => {
    const t = uniqueTenant("dl");
    const other = uniqueTenant("dl");
    const cmd = command("echo.test", { hello: "world" });
    expect((await e2e.call("POST", "/sidecar/command", t, cmd)).status).toBe(202);
    await waitForReport(t, cmd.command_id, "command.failed");

    // Non-admins are refused; another tenant sees nothing.
    expect((await list(t, "", { "x-roles": "operator" })).status).toBe(403);
    expect((await list(other)).body).toEqual({ dead_letters: [], next_before: null });

    const page = await list(t);
    expect(page.status).toBe(200);
    expect(page.body.dead_letters).toHaveLength(1);
    const dl = page.body.dead_letters[0]!;
    expect(dl).toMatchObject({
      source: "cmd",
      tenant: t,
      reason: "retries_exhausted",
      code: "RETRIES_EXHAUSTED",
      disposition: "hold",
      stream: STREAMS.commands,
      subject: subjects.command(t, cmd.command_id),
      deliveries: 2,
    });
    expect((await list(t, "?code=POISON_MESSAGE")).body.dead_letters).toEqual([]);
    expect((await list(t, "?source=approval")).body.dead_letters).toEqual([]);
    expect((await list(t, "?source=cmd&code=RETRIES_EXHAUSTED")).body.dead_letters).toHaveLength(1);
    expect((await list(t, "?limit=0")).status).toBe(400);

    const one = await e2e.call<{ payload: string }>("GET", `/admin/dead-letters/${dl.id}`, t, undefined, admin);
    expect(one.status).toBe(200);
    expect(JSON.parse(one.body.payload)).toMatchObject({ command_id: cmd.command_id, type: "echo.test" });
    expect((await e2e.call("GET", `/admin/dead-letters/${dl.id}`, other, undefined, admin)).status).toBe(404);
    expect((await e2e.call("POST", `/admin/dead-letters/${dl.id}/requeue`, other, undefined, admin)).status).toBe(404);
    expect((await e2e.call("GET", "/admin/dead-letters/abc", t, undefined, admin)).status).toBe(404);

    // The handler is fixed (the worker restarts without the fault); requeue: 202, it runs once.
    await e2e.stack.stop("command-worker");
    await e2e.stack.start("command-worker", { FAULT_INJECT_FAIL_TYPES: "" });
    const rq = await e2e.call("POST", `/admin/dead-letters/${dl.id}/requeue`, t, undefined, admin);
    expect(rq.status).toBe(202);
    expect(rq.body).toEqual({
      accepted: true,
      id: dl.id,
      requeue_subject: `${subjects.command(t, cmd.command_id)}.requeue`,
      removed: true,
    });
    await waitForReport(t, cmd.command_id, "command.completed");
    expect(await reportTypes(t, cmd.command_id)).toEqual([
      "command.accepted",
      "command.started",
      "command.failed",
      "command.started",
      "command.completed",
    ]);
    // Tracing off, each run still keeps one trace id in all its reports (the gateway's for the
    // command, the admin request's for the requeued run).
    const traces = (await reports(t)).filter((r) => r.causality.command_id === cmd.command_id).map((r) => r.trace_id);
    expect(traces.every((x) => /^[0-9a-f]{32}$/.test(x ?? ""))).toBe(true);
    expect(new Set(traces.slice(0, 3)).size).toBe(1);
    expect(new Set(traces.slice(3)).size).toBe(1);
    // Removed once requeued: it can be neither read nor requeued again.
    expect((await e2e.call("GET", `/admin/dead-letters/${dl.id}`, t, undefined, admin)).status).toBe(404);
    expect((await e2e.call("POST", `/admin/dead-letters/${dl.id}/requeue`, t, undefined, admin)).status).toBe(404);
    expect((await list(t)).body.dead_letters).toEqual([]);
  });

  it("poison is an alarm; a failed approved action cannot be requeued (409); pnpm dlq lists and drops", async () => {
    const t = uniqueTenant("dl");
    // Messages no gateway would publish, from the NATS users allowed to publish those subjects.
    const logger = pino({ level: "silent" });
    const users = e2e.nats.users!;
    const gw = await connectNats({ url: e2e.nats.url, name: "poison", logger, auth: users.gateway });
    const aw = await connectNats({ url: e2e.nats.url, name: "poison", logger, auth: users["approval-worker"] });
    try {
      gw.publish(subjects.command(t, "poison-1"), "{ not json");
      aw.publish(subjects.approvedAction(t, "poison-2"), JSON.stringify({ kind: "approved_action" }));
      await gw.flush();
      await aw.flush();
    } finally {
      await gw.close();
      await aw.close();
    }
    await waitFor(async () => (await list(t)).body.dead_letters?.length === 2, 20_000, "two dead letters");
    const letters = (await list(t)).body.dead_letters as { id: string; subject: string; disposition: string }[];
    expect(letters.map((d) => d.disposition)).toEqual(["alarm", "alarm"]);
    const metrics = await (await fetch(`http://127.0.0.1:${e2e.stack.ports["command-worker"]}/metrics`)).text();
    expect(metrics).toMatch(/nexus_dead_letter_alarms_total\{[^}]*code="POISON_MESSAGE"[^}]*\} 2/);

    const approved = letters.find((d) => d.subject.endsWith(".approved"))!;
    const refused = await e2e.call<ErrorBody>(
      "POST",
      `/admin/dead-letters/${approved.id}/requeue`,
      t,
      undefined,
      admin,
    );
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: "DEAD_LETTER_NOT_REQUEUEABLE", recoverable: false });

    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [path.join(REPO_ROOT, "packages/client/src/cli/main.ts"), "dlq", ...args], {
        encoding: "utf8",
        env: { ...process.env, NEXUS_URL: e2e.stack.gatewayUrl, NEXUS_ORG: t.org_id, NEXUS_PROJECT: t.project_id },
        timeout: 20_000,
      });
    const listed = cli("list", "--json", "--code", "POISON_MESSAGE");
    expect(listed.status, listed.stderr).toBe(0);
    expect(
      JSON.parse(listed.stdout)
        .dead_letters.map((d: { id: string }) => d.id)
        .sort(),
    ).toEqual(letters.map((d) => d.id).sort());
    for (const d of letters) expect(cli("drop", d.id)).toMatchObject({ status: 0, stdout: `dropped ${d.id}\n` });
    expect((await list(t)).body.dead_letters).toEqual([]);
    expect(cli("drop", letters[0]!.id).status).toBe(1); // gone: 404
  });
});

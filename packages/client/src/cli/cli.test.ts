/**
 * The `nexus` CLI as a child process (`node packages/client/src/cli/main.ts …`): against the
 * real stack for what it serves today, against a local server for the dead-letter and history
 * endpoints that do not exist on the stack yet.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Tenant } from "@nexus/contracts";
import { type Stack, stackForTest, type TestStack, uniqueTenant } from "@nexus/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../client.ts";
import { apiError, json, type LocalServer, localServer, reportData } from "../testing/local-server.ts";

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "main.ts");

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a CLI child: no NEXUS_* from the test runner, plus `env`. */
function cliEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NEXUS_")));
  return { ...base, ...env };
}

function spawnCli(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [MAIN, ...args], { env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs the CLI to completion (killed after `timeoutMs`). */
function runCli(args: string[], env: Record<string, string>, timeoutMs = 45_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawnCli(args, env);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d) => {
      stdout += d;
    });
    child.stderr?.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("nexus CLI against the real stack", () => {
  let rig: TestStack;
  let stack: Stack;
  beforeAll(async () => {
    rig = await stackForTest({ env: { SSE_HEARTBEAT_MS: "500" } });
    stack = rig.stack;
  });
  afterAll(async () => {
    await rig?.close();
  });

  const envFor = (t: Tenant) => ({ NEXUS_URL: stack.gatewayUrl, NEXUS_ORG: t.org_id, NEXUS_PROJECT: t.project_id });

  it("send --wait prints the command.completed report and exits 0", async () => {
    const t = uniqueTenant("cli");
    const r = await runCli(
      ["send", "doc.summary.create", "--params", '{"text":"One fact. Another fact. A third fact."}', "--wait"],
      envFor(t),
    );
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      report: { type: "command.completed", status: "done", result: { sentences: expect.any(Array) } },
      report_id: expect.stringMatching(/^\d+$/),
      causality: { command_id: expect.any(String), correlation_id: expect.any(String) },
    });
    expect(r.stderr).toContain("accepted");
  });

  it("send --wait of a RED command prints ask.created; approve <ask_id> answers 202 and the ask executes", async () => {
    const t = uniqueTenant("cli");
    const env = envFor(t);
    const params = JSON.stringify({
      recipient: "partner@example.org",
      resource: { ref: "doc:7", title: "Plan" },
      channel: "email",
    });
    const sent = await runCli(["send", "external_share.prepare", "--params", params, "--wait"], env);
    expect(sent.code, sent.stderr).toBe(0);
    const created = JSON.parse(sent.stdout);
    expect(created.report.type).toBe("ask.created");
    const askId: string = created.report.ask.ask_id;

    const client = createClient({ baseUrl: stack.gatewayUrl, auth: { mode: "headers", tenant: t } });
    const f = client.follow();
    try {
      await f.ready();
      const approved = await runCli(["approve", askId, "--note", "fine", "--correlation-id", "c-cli-approve"], env);
      expect(approved.code, approved.stderr).toBe(0);
      expect(JSON.parse(approved.stdout)).toMatchObject({ accepted: true, correlation_id: "c-cli-approve" });
      const executed = await f.waitForReport((x) => x.causality.ask_id === askId && x.report.type === "ask.executed");
      expect(executed.causality.correlation_id).toBe("c-cli-approve");
    } finally {
      f.close();
    }
    // A different decision now is a conflict: exit 1 with the standard error's code.
    const rejected = await runCli(["reject", askId], env);
    expect(rejected.code).toBe(1);
    expect(rejected.stderr).toContain("error: ASK_ALREADY_DECIDED:");
  });

  it("watch --ndjson prints one JSON event per line (snapshot, then reports) until killed", async () => {
    const t = uniqueTenant("cli");
    const child = spawnCli(["watch", "--ndjson"], envFor(t));
    const lines: string[] = [];
    let buf = "";
    let stderr = "";
    child.stderr?.on("data", (d) => {
      stderr += d;
    });
    const waitLines = (pred: (ls: string[]) => boolean, what: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${what}; got ${lines.join("\n")}`)),
          30_000,
        );
        const check = () => {
          if (pred(lines)) {
            clearTimeout(timer);
            child.stdout?.off("data", onData);
            resolve();
          }
        };
        const onData = () => check();
        child.stdout?.on("data", onData);
        check();
      });
    child.stdout?.on("data", (d) => {
      buf += d;
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      lines.push(...parts.filter(Boolean));
    });
    const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
    try {
      await waitLines((ls) => ls.length >= 1, "the snapshot line");
      const client = createClient({ baseUrl: stack.gatewayUrl, auth: { mode: "headers", tenant: t } });
      const acc = await client.sendCommand({ type: "doc.summary.create", params: { text: "Alpha. Beta." } });
      await waitLines((ls) => ls.some((l) => l.includes('"command.completed"')), "command.completed");
      child.kill("SIGTERM");
      expect(await exited, stderr).toBe(0);
      const events = lines.map((l) => JSON.parse(l));
      expect(events[0]).toMatchObject({ event: "snapshot", data: { report_id: expect.any(String) } });
      const reports = events.filter((e) => e.event === "report");
      expect(reports.map((e) => e.data.report.type)).toEqual(
        expect.arrayContaining(["command.accepted", "command.completed"]),
      );
      expect(reports.every((e) => e.data.causality.command_id === acc.command_id)).toBe(true);
      const ids = reports.map((e) => Number(e.data.report_id));
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
      expect(stderr).toContain("# connected");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("snapshot prints the current snapshot as JSON", async () => {
    const t = uniqueTenant("cli");
    const r = await runCli(["snapshot"], envFor(t));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      report_id: expect.any(String),
      tenant: t,
      snapshot: { autopilot: { status: "idle" }, worklog: [], asks: [] },
    });
  });

  it("API errors exit 1 with code and message; usage errors exit 2", async () => {
    const t = uniqueTenant("cli");
    const env = envFor(t);
    const unknown = await runCli(["send", "no_such.type"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^error: UNKNOWN_COMMAND_TYPE: /m);
    expect(unknown.stderr).toContain("  - type: must be one of");

    const noAsk = await runCli(["approve", "no-such-ask"], env);
    expect(noAsk.code).toBe(1);
    expect(noAsk.stderr).toContain("error: ASK_NOT_FOUND:");

    const usageCases = [["send"], ["frobnicate"], ["send", "x", "--params", "not json"], ["watch", "--nope"], []];
    const results = await Promise.all(usageCases.map((args) => runCli(args, env)));
    results.forEach((u, i) => {
      expect(u.code, `${usageCases[i]?.join(" ")}: ${u.stderr}`).toBe(2);
      expect(u.stderr).toContain("Usage: nexus");
    });
    const noTenant = await runCli(["snapshot"], { NEXUS_URL: stack.gatewayUrl });
    expect(noTenant.code).toBe(2);
    const help = await runCli(["--help"], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("dlq list");
  });
});

describe("nexus CLI against a local server (endpoints not on the real stack yet)", () => {
  let server: LocalServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  const DL = {
    id: "17",
    reason: "retries_exhausted",
    code: "HANDLER_FAILED",
    error: "provider timed out",
    stream: "NEXUS_COMMANDS",
    subject: "nexus.cmd.acme.nexus.draft_email.create",
    tenant: { org_id: "acme", project_id: "nexus" },
    deliveries: 5,
    ts: "2026-02-03T09:00:00.000Z",
  };

  it("dlq list | show | requeue | drop (admin dead-letter endpoints, local server)", async () => {
    server = await localServer((req, res) => {
      if (req.headers["x-api-key"] !== "admin-key") return apiError(res, 401, "UNAUTHENTICATED", false);
      if (req.method === "GET" && req.path === "/admin/dead-letters")
        return json(res, 200, { dead_letters: [DL, { ...DL, id: 16, code: undefined }], next_before: "16" });
      if (req.method === "GET" && req.path === "/admin/dead-letters/17")
        return json(res, 200, { ...DL, payload: "{}" });
      if (req.method === "POST" && req.path === "/admin/dead-letters/17/requeue")
        return json(res, 202, { accepted: true, id: "17" });
      if (req.method === "DELETE" && req.path === "/admin/dead-letters/17") {
        res.writeHead(204).end();
        return;
      }
      apiError(res, 404, "NOT_FOUND", false);
    });
    const env = { NEXUS_URL: server.url, NEXUS_ORG: "acme", NEXUS_PROJECT: "nexus", NEXUS_API_KEY: "admin-key" };

    const list = await runCli(["dlq", "list", "--limit", "2"], env);
    expect(list.code, list.stderr).toBe(0);
    const rows = list.stdout.trim().split("\n");
    expect(rows[0]).toMatch(/^ID\s+TS\s+REASON\s+CODE\s+DELIVERIES\s+SUBJECT\s+ERROR$/);
    expect(rows[1]).toMatch(/^17\s+2026-02-03T09:00:00.000Z\s+retries_exhausted\s+HANDLER_FAILED\s+5\s+nexus\.cmd\./);
    expect(rows[2]).toMatch(/^16\s.*\s-\s/);
    expect(rows[3]).toBe("more: nexus dlq list --before 16");

    const listJson = await runCli(["dlq", "list", "--json"], env);
    expect(JSON.parse(listJson.stdout).dead_letters.map((d: { id: string }) => d.id)).toEqual(["17", "16"]);

    const show = await runCli(["dlq", "show", "17"], env);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: "17", payload: "{}", deliveries: 5 });
    const requeue = await runCli(["dlq", "requeue", "17"], env);
    expect(requeue.code).toBe(0);
    expect(JSON.parse(requeue.stdout)).toEqual({ accepted: true, id: "17" });
    const drop = await runCli(["dlq", "drop", "17"], env);
    expect(drop).toMatchObject({ code: 0, stdout: "dropped 17\n" });

    const missing = await runCli(["dlq", "show", "99"], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("error: NOT_FOUND:");
    const bad = await runCli(["dlq", "purge"], env);
    expect(bad.code).toBe(2);

    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      "GET /admin/dead-letters?limit=2",
      "GET /admin/dead-letters",
      "GET /admin/dead-letters/17",
      "POST /admin/dead-letters/17/requeue",
      "DELETE /admin/dead-letters/17",
      "GET /admin/dead-letters/99",
    ]);
  });

  it("history --before --limit prints the page (history endpoint, local server)", async () => {
    server = await localServer((_req, res) => json(res, 200, { reports: [reportData("8")], next_before: null }));
    const r = await runCli(["history", "--before", "9", "--limit", "1"], {
      NEXUS_URL: server.url,
      NEXUS_ORG: "acme",
      NEXUS_PROJECT: "nexus",
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ reports: [{ report_id: "8" }], next_before: null });
    expect(server.requests[0]?.url).toBe("/agent/reports?before=9&limit=1");
  });
});

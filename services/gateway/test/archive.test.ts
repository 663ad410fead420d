/**
 * The archive's endpoints on real NATS and Postgres, with the archiver running as its own
 * process: history pages, the audit export checked by `pnpm audit:verify` (and tampering —
 * an edited, a deleted, reordered rows — caught), and the tenant purge.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { HistoryPage, PurgeResult, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import {
  REPO_ROOT,
  reportPublisher,
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
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayHarness, startGateway } from "./harness.ts";

let nats: TestNats;
let database: TestDatabase;
let gw: GatewayHarness;
let rig: TestStack;
let baseUrl: string;

beforeAll(async () => {
  rig = await stackForTest({
    skip: ["gateway", "stream", "command-worker", "approval-worker"],
    env: { LOG_LEVEL: "warn" },
  });
  ({ nats, database } = rig);
  gw = await startGateway({ nats, db: database });
  await gw.app.listen({ host: "127.0.0.1", port: 0 });
  const addr = gw.app.server.address();
  baseUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
afterAll(async () => {
  await gw?.close();
  await rig?.close();
});

const js = () => jetstream(gw.nc);

async function publish(t: Tenant, n: number, label = "r"): Promise<number[]> {
  const pub = reportPublisher(js());
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const commandId = `cmd-${label}-${i}-${Math.random().toString(36).slice(2, 8)}`;
    const id = await pub.publish({
      tenant: t,
      entityId: commandId,
      step: "progress.step",
      report: {
        type: "command.progress",
        status: "running",
        title: `step ${label}${i}`,
        command: { command_id: commandId, type: "draft_email.create" },
        progress: { step: `${label}${i}` },
      },
      causality: { correlation_id: `c-${label}${i}`, command_id: commandId },
      ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    });
    ids.push(Number(id));
  }
  return ids;
}

async function archivedThrough(t: Tenant, id: number): Promise<void> {
  await waitFor(
    async () => {
      const r = await database.db
        .selectFrom("agent_report_chains")
        .select("last_report_id")
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .executeTakeFirst();
      return Number(r?.last_report_id ?? 0) >= id;
    },
    20_000,
    `archived through ${id}`,
  );
}

/** Runs `pnpm audit:verify` (the script itself) on the tenant's export URL. */
async function verify(t: Tenant, extra: string[] = []): Promise<{ code: number | null; out: string }> {
  const url = `${baseUrl}/agent/audit/export?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z`;
  const child = spawn(
    process.execPath,
    [
      path.join(REPO_ROOT, "scripts/audit-verify.ts"),
      url,
      "--header",
      `x-org-id: ${t.org_id}`,
      "--header",
      `x-project-id: ${t.project_id}`,
      ...extra,
    ],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const code = await new Promise<number | null>((r) => child.on("exit", r));
  return { code, out };
}

/** Runs `f` with row triggers off (what a database superuser tampering with the archive can do). */
async function tamper(f: (trx: import("kysely").Transaction<import("@nexus/core").Database>) => Promise<void>) {
  await database.db.transaction().execute(async (trx) => {
    await sql`set local session_replication_role = replica`.execute(trx);
    await f(trx);
  });
}

describe("GET /agent/reports (history)", () => {
  it("pages through the archive newest first, in the stream's report envelope, tenant-scoped", async () => {
    const t = uniqueTenant("hist");
    const other = uniqueTenant("hist-other");
    const ids = await publish(t, 120);
    await publish(other, 5);
    await archivedThrough(t, ids.at(-1) as number);
    const streamed = new Map((await tenantReports(js(), t)).map((r) => [r.report_id, r]));
    const seen: string[] = [];
    let before: string | null | undefined;
    for (let page = 0; page < 4; page++) {
      const q = new URLSearchParams({ limit: "50", ...(before ? { before } : {}) });
      const r = await gw.app.inject({
        url: `/agent/reports?${q}`,
        headers: { ...tenantHeaders(t), "x-roles": "viewer" },
      });
      expect(r.statusCode).toBe(200);
      const body = HistoryPage.parse(r.json());
      for (const e of r.json().reports) expect(e).toEqual(streamed.get(e.report_id)); // same envelope, same fields
      seen.push(...body.reports.map((e) => e.report_id));
      before = body.next_before;
      if (before === null) break;
    }
    expect(seen).toEqual(ids.map(String).reverse());
    expect(before).toBeNull();
  });

  it("answers 400 for a bad limit or before, and nothing of another tenant", async () => {
    const t = uniqueTenant("hist-bad");
    for (const q of ["limit=0", "limit=501", "before=abc", "before=-1"]) {
      const r = await gw.app.inject({ url: `/agent/reports?${q}`, headers: tenantHeaders(t) });
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe("VALIDATION_FAILED");
    }
    const empty = await gw.app.inject({ url: "/agent/reports", headers: tenantHeaders(t) });
    expect(empty.json()).toEqual({ reports: [], next_before: null });
    expect((await gw.app.inject({ url: "/agent/reports" })).statusCode).toBe(400);
  });
});

describe("GET /agent/audit/export and pnpm audit:verify", () => {
  it("exports the chain as NDJSON (admin only) and the verifier accepts it from genesis", async () => {
    const t = uniqueTenant("audit");
    const ids = await publish(t, 30);
    await archivedThrough(t, ids.at(-1) as number);
    const r = await gw.app.inject({
      url: "/agent/audit/export?from=2026-01-01T00:00:05Z&to=2026-01-01T00:00:10Z",
      headers: tenantHeaders(t),
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/x-ndjson/);
    const lines = r.body
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.report_id)).toEqual(ids.slice(5, 10).map(String));
    expect(lines[0]).toMatchObject({ org_id: t.org_id, type: "command.progress", report: { tenant: t } });
    expect(lines[1].prev_hash).toBe(lines[0].hash);
    expect(String(r.headers["x-nexus-chain-head"])).toMatch(new RegExp(`^${ids.at(-1)} [0-9a-f]{64}$`));
    const ok = await verify(t, ["--genesis"]);
    expect(ok.out).toContain("chain ok: 30 lines");
    expect(ok.code).toBe(0);
    const viewer = await gw.app.inject({
      url: "/agent/audit/export?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
      headers: { ...tenantHeaders(t), "x-roles": "viewer" },
    });
    expect(viewer.statusCode).toBe(403);
    expect(viewer.json().error.code).toBe("FORBIDDEN");
    const backwards = await gw.app.inject({
      url: "/agent/audit/export?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
      headers: tenantHeaders(t),
    });
    expect(backwards.statusCode).toBe(400);
  });

  it("catches an edited report, naming it", async () => {
    const t = uniqueTenant("edit");
    const ids = await publish(t, 10);
    await archivedThrough(t, ids.at(-1) as number);
    await tamper(async (trx) => {
      await sql`update agent_report_events set payload = replace(payload, 'step r4', 'step r4 (changed)')
                where org_id = ${t.org_id} and report_id = ${ids[4]}`.execute(trx);
    });
    const v = await verify(t, ["--genesis"]);
    expect(v.code).toBe(1);
    expect(v.out).toContain(`BROKEN: line 5 (report_id ${ids[4]}): hash does not match the report`);
  });

  it("catches a deleted report, naming the link after it", async () => {
    const t = uniqueTenant("del");
    const ids = await publish(t, 10);
    await archivedThrough(t, ids.at(-1) as number);
    await tamper(async (trx) => {
      await sql`delete from agent_report_events where org_id = ${t.org_id} and report_id = ${ids[6]}`.execute(trx);
    });
    const v = await verify(t, ["--genesis"]);
    expect(v.code).toBe(1);
    expect(v.out).toContain(
      `BROKEN: line 7 (report_id ${ids[7]}): prev_hash does not match the hash of report ${ids[5]}`,
    );
  });

  it("catches reordered reports (two rows' contents swapped, hashes and all)", async () => {
    const t = uniqueTenant("swap");
    const ids = await publish(t, 10);
    await archivedThrough(t, ids.at(-1) as number);
    await tamper(async (trx) => {
      // Swap everything but the report_id: the rows now claim each other's place in the chain.
      await sql`
        update agent_report_events e set payload = o.payload, prev_hash = o.prev_hash, hash = o.hash, ts = o.ts
        from agent_report_events o
        where e.org_id = ${t.org_id} and o.org_id = ${t.org_id}
          and ((e.report_id = ${ids[2]} and o.report_id = ${ids[3]}) or (e.report_id = ${ids[3]} and o.report_id = ${ids[2]}))`.execute(
        trx,
      );
    });
    const v = await verify(t, ["--genesis"]);
    expect(v.code).toBe(1);
    expect(v.out).toContain(`BROKEN: line 3 (report_id ${ids[2]})`);
  });
});

describe("DELETE /admin/tenants/{org_id}/{project_id}", () => {
  it("erases the tenant in Postgres and JetStream, reports tenant.purged, keeps an audit entry; the chain goes on", async () => {
    const t = uniqueTenant("purge");
    const other = uniqueTenant("keep");
    const ids = await publish(t, 20);
    const kept = await publish(other, 3);
    const settings = await gw.app.inject({
      method: "PATCH",
      url: "/profile",
      headers: tenantHeaders(t),
      payload: { display_name: "Kim" },
    });
    expect(settings.statusCode).toBe(202);
    const cmd = await gw.app.inject({
      method: "POST",
      url: "/sidecar/command",
      headers: tenantHeaders(t),
      payload: { type: "echo.test", params: { x: 1 } },
    });
    expect(cmd.statusCode).toBe(202);
    // the settings report is the tenant's newest report (no command-worker runs here, so the
    // command is stored in NEXUS_COMMANDS and has no report yet)
    const w = Number(settings.json().first_followup_report_id);
    await archivedThrough(t, Math.max(w, ids.at(-1) as number));
    const headBefore = await database.db
      .selectFrom("agent_report_chains")
      .selectAll()
      .where("org_id", "=", t.org_id)
      .where("project_id", "=", t.project_id)
      .executeTakeFirstOrThrow();

    const forbidden = await gw.app.inject({
      method: "DELETE",
      url: `/admin/tenants/${t.org_id}/${t.project_id}`,
      headers: { ...tenantHeaders(t), "x-roles": "operator" },
    });
    expect(forbidden.statusCode).toBe(403);
    const mismatch = await gw.app.inject({
      method: "DELETE",
      url: `/admin/tenants/${other.org_id}/${other.project_id}`,
      headers: tenantHeaders(t),
    });
    expect(mismatch.json().error.code).toBe("TENANT_MISMATCH");
    const invalid = await gw.app.inject({ method: "DELETE", url: "/admin/tenants/a.b/p", headers: tenantHeaders(t) });
    expect(invalid.statusCode).toBe(400);

    const r = await gw.app.inject({
      method: "DELETE",
      url: `/admin/tenants/${t.org_id}/${t.project_id}`,
      headers: { ...tenantHeaders(t), "x-user-id": "root", "x-correlation-id": "c-purge" },
    });
    expect(r.statusCode).toBe(200);
    const body = PurgeResult.parse(r.json());
    expect(Number(body.reports_through)).toBe(w);
    expect(body.counts).toMatchObject({
      // the 20 published above and settings.updated (the command has no report: no worker here)
      agent_report_events: 21,
      tenant_settings: 1,
      nats_reports: 21,
      nats_commands: 1,
    });
    expect(body.report_id).toBeDefined();

    // JetStream: only the tenant.purged report is left of the tenant; the other tenant is untouched.
    const left = await tenantReports(js(), t);
    expect(left.map((x) => x.report.type)).toEqual(["tenant.purged"]);
    expect(left[0]).toMatchObject({ report_id: body.report_id, causality: { correlation_id: "c-purge" } });
    expect((await tenantReports(js(), other)).map((x) => Number(x.report_id))).toEqual(kept);
    const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(gw.nc);
    const cmdInfo = await jsm.streams.info(STREAMS.commands, { subjects_filter: subjects.tenantFilter("cmd", t) });
    expect(cmdInfo.state.subjects ?? {}).toEqual({});

    // Postgres: rows gone, the audit entry stays, the chain continues from the head before the purge.
    expect(
      await database.db.selectFrom("tenant_settings").selectAll().where("org_id", "=", t.org_id).execute(),
    ).toEqual([]);
    const audit = await database.db.selectFrom("tenant_purges").selectAll().where("org_id", "=", t.org_id).execute();
    expect(audit).toMatchObject([
      { principal: "root", correlation_id: "c-purge", reports_through: String(w), chain_hash: headBefore.last_hash },
    ]);
    await archivedThrough(t, Number(body.report_id));
    const rows = await database.db
      .selectFrom("agent_report_events")
      .select(["report_id", "prev_hash", "type"])
      .where("org_id", "=", t.org_id)
      .execute();
    expect(rows).toEqual([{ report_id: body.report_id, prev_hash: headBefore.last_hash, type: "tenant.purged" }]);
    const history = await gw.app.inject({ url: "/agent/reports", headers: tenantHeaders(t) });
    expect(history.json().reports.map((x: { report_id: string }) => x.report_id)).toEqual([body.report_id]);

    // Purging again is harmless and erases what came since (the first tenant.purged report too).
    const again = await gw.app.inject({
      method: "DELETE",
      url: `/admin/tenants/${t.org_id}/${t.project_id}`,
      headers: tenantHeaders(t),
    });
    expect(again.statusCode).toBe(200);
    expect(Number(again.json().reports_through)).toBe(Number(body.report_id));
  });
});

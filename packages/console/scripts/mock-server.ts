/**
 * A stand-in back end for developing and checking the console without NATS and Postgres:
 * serves `dist/` at `/ui/` and fakes the API and the report stream of CONTRACT.md in memory
 * (one process, every tenant separate). Reports are built with the contracts' schemas and the
 * state with their `applyReport`, so the console sees what the real stack would send.
 *
 * Usage: tsx scripts/mock-server.ts [port]   (default 4180)
 *
 * Test hooks (POST, tenant from the usual headers or `?org_id=&project_id=`):
 * - `/__mock/fail-streams?n=3`  answer the next n stream requests with 503
 * - `/__mock/drop`              end every open stream connection (the browser reconnects)
 * - `/__mock/redeliver`         send the tenant's last report again (at-least-once delivery)
 * - `/__mock/retention?keep=1`  keep only the newest n reports (older cursors expire)
 * - `/__mock/expire-cursors`    answer the next stream request that has a cursor with CURSOR_EXPIRED
 * - `/__mock/burst?n=5000&rate=500`  publish n reports (accepted → started → completed of synthetic
 *                               commands) at `rate` per second; answers when the last one is sent
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { extname, join, normalize } from "node:path";
import {
  type AgentReport,
  type ApiError,
  apiError,
  applyReport,
  COMMAND_TYPES,
  DecideRequest,
  errorSpec,
  isCommandType,
  isTenantToken,
  normaliseCommandRequest,
  parseCursor,
  type ReportEvent,
  type Snapshot,
  type Tenant,
  zodDetails,
} from "@nexus/contracts";

const port = Number(process.argv[2] ?? 4180);
const dist = join(import.meta.dirname, "..", "dist");

interface TenantData {
  base: Snapshot;
  baseId: number;
  reports: ReportEvent[];
  seq: number;
  clients: Set<ServerResponse>;
  failStreams: number;
  expireCursors: boolean;
  photo?: Buffer;
}

const tenants = new Map<string, TenantData>();
function data(t: Tenant): TenantData {
  const key = `${t.org_id}/${t.project_id}`;
  let d = tenants.get(key);
  if (!d) {
    d = {
      base: {
        autopilot: { status: "idle", in_flight: 0 },
        worklog: [],
        asks: [],
        profile: { display_name: "Kim Example", locale: "en-GB", timezone: "Europe/Berlin" },
        assistant: { persona: { name: "Nex", tone: "friendly" }, skin: { theme: "system", accent_color: "#0e7490" } },
        compliance: { risk_overrides: {}, ask_ttl_seconds: null, policy_version: 1 },
      },
      baseId: 100,
      reports: [],
      seq: 100,
      clients: new Set(),
      failStreams: 0,
      expireCursors: false,
    };
    tenants.set(key, d);
  }
  return d;
}

function current(d: TenantData): { snapshot: Snapshot; id: number } {
  return { snapshot: d.reports.reduce(applyReport, d.base), id: d.seq };
}

function sse(res: ServerResponse, event: string, payload: unknown, id?: string) {
  res.write(`event: ${event}\n${id ? `id: ${id}\n` : ""}data: ${JSON.stringify(payload)}\n\n`);
}

function publish(t: Tenant, report: AgentReport, causality: ReportEvent["causality"]) {
  const d = data(t);
  d.seq += 1 + Math.floor(Math.random() * 2); // ids increase but are not contiguous
  const ev: ReportEvent = { report, causality, tenant: t, ts: new Date().toISOString(), report_id: String(d.seq) };
  d.reports.push(ev);
  for (const c of d.clients) sse(c, "report", ev, ev.report_id);
}

function tenantOf(req: IncomingMessage, url: URL): Tenant | null {
  const org = (req.headers["x-org-id"] as string | undefined) ?? url.searchParams.get("org_id");
  const project = (req.headers["x-project-id"] as string | undefined) ?? url.searchParams.get("project_id");
  return isTenantToken(org) && isTenantToken(project) ? { org_id: org, project_id: project } : null;
}

function reply(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
function fail(res: ServerResponse, error: ApiError, correlation_id = randomUUID()) {
  reply(res, errorSpec(error.code).status, { error, correlation_id });
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const later = (ms: number, fn: () => void) => setTimeout(fn, ms);

function fakeResult(type: string, params: Record<string, unknown>): unknown {
  switch (type) {
    case "draft_email.create":
      return {
        subject: (params.subject as string) ?? "Re: your offer",
        body: `Dear ${(params.to as string) ?? "colleague"},\n\nthank you for your message. ${params.brief}\n\nBest regards,\nKim`,
      };
    case "prep_pack.create":
      return {
        summary: `Prep for “${params.meeting_title}” with ${(params.attendees as string[]).length} attendees.`,
        checklist: [...(params.agenda as string[]).map((a) => `Prepare: ${a}`), "Send the agenda to all attendees"],
      };
    case "doc.summary.create": {
      const sentences = String(params.text)
        .split(/(?<=[.!?])\s+/)
        .slice(0, (params.max_sentences as number) ?? 3);
      return { summary: sentences.join(" "), sentences };
    }
    case "calendar.options.create": {
      const start = Date.parse((params.window as { start: string }).start);
      const dur = (params.duration_minutes as number) * 60_000;
      return {
        options: [0, 1, 2].map((i) => ({
          start: new Date(start + i * 2 * 3600_000).toISOString(),
          end: new Date(start + i * 2 * 3600_000 + dur).toISOString(),
        })),
      };
    }
    default:
      return {};
  }
}

async function handleCommand(req: IncomingMessage, res: ServerResponse, t: Tenant) {
  let json: unknown;
  try {
    json = JSON.parse((await body(req)).toString("utf8"));
  } catch {
    return fail(res, apiError("MALFORMED_JSON"));
  }
  const n = normaliseCommandRequest(json);
  if (!n.ok) return fail(res, apiError("VALIDATION_FAILED", undefined, zodDetails(n.error)));
  const cmd = n.command;
  if (!isCommandType(cmd.type)) return fail(res, apiError("UNKNOWN_COMMAND_TYPE"));
  const spec = COMMAND_TYPES[cmd.type];
  const p = spec.params.safeParse(cmd.params);
  if (!p.success) return fail(res, apiError("VALIDATION_FAILED", undefined, zodDetails(p.error, "params")));
  const command_id = cmd.command_id ?? randomUUID();
  const correlation_id = cmd.correlation_id ?? randomUUID();
  const command = { command_id, type: cmd.type };
  const c = { correlation_id, command_id };
  const d = data(t);
  const risk = d.base.compliance.risk_overrides[cmd.type] ?? spec.risk;
  publish(t, { type: "command.accepted", status: "accepted", title: spec.title, command, risk_level: risk }, c);
  reply(res, 202, { accepted: true, command_id, correlation_id, first_followup_report_id: String(d.seq) });
  later(300, () => publish(t, { type: "command.started", status: "running", title: spec.title, command }, c));
  if (risk === "RED") {
    const ask_id = randomUUID();
    later(600, () =>
      publish(
        t,
        {
          type: "ask.created",
          status: "pending_approval",
          title: `Approve: ${spec.title}`,
          command,
          ask: {
            ask_id,
            risk_level: "RED",
            status: "open",
            action: { type: cmd.type, command_id, params: p.data as Record<string, unknown> },
            expires_at: new Date(Date.now() + (d.base.compliance.ask_ttl_seconds ?? 900) * 1000).toISOString(),
          },
        },
        { ...c, ask_id },
      ),
    );
    return;
  }
  later(900, () => {
    if (cmd.type === "calendar.options.create" && (p.data as { busy: unknown[] }).busy.length > 5) {
      publish(
        t,
        { type: "command.failed", status: "failed", title: spec.title, command, error: apiError("INSUFFICIENT_SLOTS") },
        c,
      );
      return;
    }
    publish(
      t,
      {
        type: "command.completed",
        status: "done",
        title: `${spec.title} ready`,
        command,
        result: fakeResult(cmd.type, p.data as Record<string, unknown>),
      },
      c,
    );
  });
}

async function handleDecide(req: IncomingMessage, res: ServerResponse, t: Tenant, askId: string) {
  const parsed = DecideRequest.safeParse(JSON.parse((await body(req)).toString("utf8") || "{}"));
  if (!parsed.success) return fail(res, apiError("VALIDATION_FAILED", undefined, zodDetails(parsed.error)));
  const d = data(t);
  const ask = current(d).snapshot.asks.find((a) => a.ask_id === askId);
  if (!ask) return fail(res, apiError("ASK_NOT_FOUND"));
  if (ask.status !== "open") return fail(res, apiError("ASK_ALREADY_DECIDED"));
  const correlation_id = parsed.data.correlation_id ?? randomUUID();
  const c = { correlation_id, command_id: ask.action.command_id, ask_id: askId };
  const command = { command_id: ask.action.command_id, type: ask.action.type };
  reply(res, 202, { accepted: true, correlation_id, first_followup_report_id: String(d.seq + 1) });
  later(400, () =>
    publish(
      t,
      {
        type: "ask.decided",
        status: "accepted",
        title: "Decision recorded",
        command,
        ask: { ask_id: askId, decision: parsed.data.decision, decided_by: "console-user" },
      },
      c,
    ),
  );
  later(1200, () => {
    if (parsed.data.decision === "reject") {
      publish(
        t,
        { type: "ask.cancelled", status: "cancelled", title: "Share cancelled", command, ask: { ask_id: askId } },
        c,
      );
      return;
    }
    const params = ask.action.params as {
      recipient: string;
      channel: string;
      resource: { ref: string; title: string };
    };
    publish(
      t,
      {
        type: "ask.executed",
        status: "done",
        title: "Shared",
        command,
        ask: { ask_id: askId },
        result: {
          share_id: `sh_${askId.slice(0, 8)}`,
          recipient: params.recipient,
          channel: params.channel,
          resource: params.resource,
          status: "delivered",
        },
      },
      c,
    );
  });
}

async function handleSettings(req: IncomingMessage, res: ServerResponse, t: Tenant, path: string) {
  const d = data(t);
  const s = current(d).snapshot;
  const correlation_id = (req.headers["x-correlation-id"] as string | undefined) ?? randomUUID();
  let section: "profile" | "persona" | "skin" | "compliance";
  let values: Record<string, unknown>;
  if (path === "/profile/photo") {
    const raw = await body(req);
    const type = raw.includes(Buffer.from("PNG")) ? "image/png" : "image/jpeg";
    const start = raw.indexOf("\r\n\r\n") + 4;
    const end = raw.lastIndexOf(Buffer.from("\r\n--"));
    d.photo = raw.subarray(start, end);
    section = "profile";
    values = {
      ...s.profile,
      photo: {
        url: `/profile/photo/current?org_id=${t.org_id}&project_id=${t.project_id}&v=${d.seq}`,
        content_type: type,
        bytes: d.photo.length,
        sha256: "0".repeat(64),
      },
    };
  } else {
    const patch = JSON.parse((await body(req)).toString("utf8")) as Record<string, unknown>;
    if (path === "/profile") [section, values] = ["profile", { ...s.profile, ...patch }];
    else if (path === "/assistant/persona") [section, values] = ["persona", { ...s.assistant.persona, ...patch }];
    else if (path === "/assistant/skin") [section, values] = ["skin", { ...s.assistant.skin, ...patch }];
    else {
      section = "compliance";
      values = { ...s.compliance, ...patch, policy_version: s.compliance.policy_version + 1 };
      d.base.compliance.risk_overrides = (values.risk_overrides as Record<string, "GREEN">) ?? {};
      d.base.compliance.ask_ttl_seconds = (values.ask_ttl_seconds as number | null) ?? null;
    }
  }
  reply(res, 202, { accepted: true, correlation_id, first_followup_report_id: String(d.seq + 1) });
  later(300, () =>
    publish(
      t,
      { type: "settings.updated", status: "done", title: "Settings updated", section, values },
      { correlation_id },
    ),
  );
}

/**
 * Publishes `n` reports at `rate` per second in 10 ms ticks: synthetic commands of every GREEN type go
 * accepted → started → completed, a few in flight at a time (a load test of the console).
 */
async function burst(t: Tenant, n: number, rate: number): Promise<void> {
  const types = ["draft_email.create", "doc.summary.create", "prep_pack.create", "calendar.options.create"] as const;
  const steps: (() => void)[] = [];
  for (let k = 0; steps.length < n; k++) {
    const type = types[k % types.length]!;
    const spec = COMMAND_TYPES[type];
    const command = { command_id: `burst-${Date.now().toString(36)}-${k}`, type };
    const c = { correlation_id: `burst-c-${k}`, command_id: command.command_id };
    const params: Record<string, unknown> = {
      to: "kim@example.com",
      brief: `Burst message ${k}`,
      meeting_title: `Meeting ${k}`,
      attendees: ["Kim"],
      agenda: ["One", "Two"],
      text: `Sentence one of ${k}. Sentence two. Sentence three.`,
      duration_minutes: 30,
      window: { start: "2030-03-04T09:00:00+01:00", end: "2030-03-04T17:00:00+01:00" },
    };
    steps.push(() => publish(t, { type: "command.accepted", status: "accepted", title: `${spec.title} accepted`, command, risk_level: "GREEN" }, c));
    steps.push(() => publish(t, { type: "command.started", status: "running", title: `${spec.title} started`, command }, c));
    steps.push(() =>
      publish(t, { type: "command.completed", status: "done", title: `${spec.title} ready`, command, result: fakeResult(type, params) }, c),
    );
  }
  // Interleave: three commands in flight at a time.
  const order: (() => void)[] = [];
  for (let i = 0; i < steps.length; i += 9) {
    const group = steps.slice(i, i + 9);
    for (let s = 0; s < 3; s++) for (let j = s; j < group.length; j += 3) order.push(group[j]!);
  }
  order.length = n;
  const perTick = Math.max(1, Math.round(rate / 100));
  const start = Date.now();
  for (let i = 0; i < order.length; i += perTick) {
    for (const f of order.slice(i, i + perTick)) f();
    const due = start + ((i + perTick) / rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

function handleStream(req: IncomingMessage, res: ServerResponse, t: Tenant, url: URL) {
  const d = data(t);
  console.log(
    `stream ${url.search} last-event-id=${req.headers["last-event-id"] ?? "-"}${d.failStreams > 0 ? " -> 503" : ""}`,
  );
  if (d.failStreams > 0) {
    d.failStreams--;
    return fail(res, apiError("DEPENDENCY_UNAVAILABLE"));
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
  res.write("retry: 3000\n\n");
  const raw = (req.headers["last-event-id"] as string | undefined) ?? url.searchParams.get("cursor");
  const cursor = raw == null ? null : parseCursor(raw);
  const oldest = d.reports[0] ? Number(d.reports[0].report_id) - 1 : d.baseId;
  const sendSnapshot = () => {
    const { snapshot, id } = current(d);
    sse(res, "snapshot", { snapshot, report_id: String(id), tenant: t, ts: new Date().toISOString() }, String(id));
  };
  if (raw == null) sendSnapshot();
  else if (d.expireCursors || cursor === null || cursor < oldest || cursor > d.seq) {
    d.expireCursors = false;
    sse(res, "error", { error: apiError("CURSOR_EXPIRED"), ts: new Date().toISOString() });
    sendSnapshot();
  } else for (const r of d.reports) if (Number(r.report_id) > cursor) sse(res, "report", r, r.report_id);
  d.clients.add(res);
  const ping = setInterval(() => sse(res, "ping", { ts: new Date().toISOString() }), 15_000);
  req.on("close", () => {
    clearInterval(ping);
    d.clients.delete(res);
  });
}

const MIME: Record<string, string> = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".css": "text/css",
  ".map": "application/json",
};

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  const path = url.pathname;
  try {
    if (req.method === "GET" && (path === "/ui" || path.startsWith("/ui/"))) {
      const rel =
        path === "/ui" || path === "/ui/" ? "index.html" : normalize(path.slice(4)).replace(/^(\.\.[/\\])+/, "");
      const file = await readFile(join(dist, rel)).catch(() => null);
      if (!file) return reply(res, 404, { error: apiError("NOT_FOUND") });
      res.writeHead(200, { "content-type": MIME[extname(rel)] ?? "application/octet-stream" });
      return res.end(file);
    }
    const t = tenantOf(req, url);
    if (!t) return fail(res, apiError("INVALID_TENANT"));
    const d = data(t);
    if (req.method === "GET" && path === "/agent/reports/stream") return handleStream(req, res, t, url);
    if (req.method === "GET" && path === "/profile/photo/current") {
      res.writeHead(200, { "content-type": "image/png" });
      return res.end(d.photo ?? Buffer.alloc(0));
    }
    if (req.method === "POST" && path === "/sidecar/command") return await handleCommand(req, res, t);
    const decide = /^\/approvals\/([^/]+)\/decide$/.exec(path);
    if (req.method === "POST" && decide) return await handleDecide(req, res, t, decodeURIComponent(decide[1]!));
    if (
      (req.method === "PATCH" &&
        ["/profile", "/assistant/persona", "/assistant/skin", "/compliance/settings"].includes(path)) ||
      (req.method === "POST" && path === "/profile/photo")
    )
      return await handleSettings(req, res, t, path);
    if (req.method === "POST" && path === "/__mock/fail-streams") {
      d.failStreams = Number(url.searchParams.get("n") ?? 1);
      return reply(res, 200, { ok: true });
    }
    if (req.method === "POST" && path === "/__mock/expire-cursors") {
      d.expireCursors = true;
      return reply(res, 200, { ok: true });
    }
    if (req.method === "POST" && path === "/__mock/drop") {
      for (const c of d.clients) c.destroy();
      return reply(res, 200, { ok: true, dropped: d.clients.size });
    }
    if (req.method === "POST" && path === "/__mock/redeliver") {
      const last = d.reports.at(-1);
      if (last) for (const c of d.clients) sse(c, "report", last, last.report_id);
      return reply(res, 200, { ok: true, report_id: last?.report_id });
    }
    if (req.method === "POST" && path === "/__mock/burst") {
      const n = Number(url.searchParams.get("n") ?? 5000);
      const rate = Number(url.searchParams.get("rate") ?? 500);
      const started = Date.now();
      await burst(t, n, rate);
      return reply(res, 200, { ok: true, sent: n, ms: Date.now() - started, last: d.reports.at(-1)?.report_id });
    }
    if (req.method === "POST" && path === "/__mock/retention") {
      const keep = Number(url.searchParams.get("keep") ?? 1);
      const cut = d.reports.length - keep;
      if (cut > 0) {
        d.base = d.reports.slice(0, cut).reduce(applyReport, d.base);
        d.reports = d.reports.slice(cut);
      }
      return reply(res, 200, { ok: true, oldest: d.reports[0]?.report_id });
    }
    return fail(res, apiError("NOT_FOUND"));
  } catch (err) {
    console.error(err);
    if (!res.headersSent) fail(res, apiError("INTERNAL"));
  }
});
server.listen(port, "127.0.0.1", () => {
  const a = server.address();
  const actual = typeof a === "object" && a ? a.port : port;
  console.log(`mock NEXUS API with the console at http://127.0.0.1:${actual}/ui`);
});

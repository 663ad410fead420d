/**
 * A stand-in back end for developing and checking the console without NATS and Postgres:
 * serves `dist/` at `/ui/` and fakes the API and the report stream of docs/contract.md in memory
 * (one process, every tenant separate). Reports are built with the contracts' schemas and the
 * state with their `applyReport`, so the console sees what the real stack would send, in the
 * real SSE format. It also speaks what the real stack does not yet: the history endpoint
 * (`GET /agent/reports?before=&limit=`), live `progress` events, N-of-M approvals, `requested_by`,
 * `approvals` on asks, a `principal` on the snapshot, `version` on `settings.updated`, and
 * `504 ACCEPT_UNCONFIRMED`.
 *
 * Usage: tsx scripts/mock-server.ts [port]   (default 4180; 0 picks a free one, printed)
 *
 * Test hooks (POST, tenant from the usual headers or `?org_id=&project_id=`):
 * - `/__mock/fail-streams?n=3`       answer the next n stream requests with 503
 * - `/__mock/drop`                   end every open stream connection (the browser reconnects)
 * - `/__mock/redeliver`              send the tenant's last report again (at-least-once delivery)
 * - `/__mock/retention?keep=1`       keep only the newest n reports (older cursors expire)
 * - `/__mock/expire-cursors`         answer the next stream request that has a cursor with CURSOR_EXPIRED
 * - `/__mock/burst?n=5000&rate=500`  publish n reports (accepted → started → completed of synthetic
 *                                    commands) at `rate` per second; answers when the last one is sent
 * - `/__mock/seed?n=120`             n finished commands of every type at once (history to page through)
 * - `/__mock/history?enabled=0`      the history endpoint answers 404 (as the stack did before it existed)
 * - `/__mock/principal?id=u&roles=viewer,approver`  the snapshot names this principal (no roles: none)
 * - `/__mock/fail-writes?n=1`        the next n writes answer 503 DEPENDENCY_UNAVAILABLE (nothing stored)
 * - `/__mock/decide-unconfirmed?n=2` the next n decisions answer 504 ACCEPT_UNCONFIRMED; the first is
 *                                    stored all the same (it "may take effect"), retries learn 202
 * - `/__mock/settings-report-first?on=1`  publish `settings.updated` before answering the PATCH
 * - `/__mock/hold?on=1`              GREEN commands stay running after their progress until released
 * - `/__mock/release`                let every held command end (completed or failed, as it would have)
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
  type CommandType,
  DecideRequest,
  errorSpec,
  isCommandType,
  isTenantToken,
  normaliseCommandRequest,
  parseCursor,
  RESOLVED_ASKS_LIMIT,
  type ReportEvent,
  type Snapshot,
  type Tenant,
  WORKLOG_LIMIT,
  zodDetails,
} from "@nexus/contracts";

const port = Number(process.argv[2] ?? 4180);
const dist = join(import.meta.dirname, "..", "dist");

interface AskExtra {
  requested_by: string;
  approvals_required: number;
  approvals: { principal: string; decision: "approve" | "reject"; note?: string; at: string }[];
  note?: string;
}

interface TenantData {
  base: Snapshot;
  reports: ReportEvent[];
  /** `base` with every report applied (kept up to date on publish). */
  state: Snapshot;
  seq: number;
  clients: Set<ServerResponse>;
  failStreams: number;
  expireCursors: boolean;
  photo?: Buffer;
  historyEnabled: boolean;
  principal?: { id: string; roles: string[] };
  failWrites: number;
  decideUnconfirmed: number;
  settingsReportFirst: boolean;
  /** Whether GREEN commands wait for `/__mock/release` before they end. */
  hold: boolean;
  /** Releases of held commands, called by `/__mock/release`. */
  held: (() => void)[];
  askExtra: Map<string, AskExtra>;
  versions: Record<string, number>;
  approvalsRequired: Record<string, number>;
}

const tenants = new Map<string, TenantData>();
function data(t: Tenant): TenantData {
  const key = `${t.org_id}/${t.project_id}`;
  let d = tenants.get(key);
  if (!d) {
    const base: Snapshot = {
      autopilot: { status: "idle", in_flight: 0 },
      worklog: [],
      asks: [],
      profile: { display_name: "Kim Example", locale: "en-GB", timezone: "Europe/Berlin" },
      assistant: { persona: { name: "Nex", tone: "friendly" }, skin: { theme: "system", accent_color: "#0e7490" } },
      compliance: { risk_overrides: {}, ask_ttl_seconds: null, policy_version: 1 },
    };
    d = {
      base,
      reports: [],
      state: base,
      seq: 100,
      clients: new Set(),
      failStreams: 0,
      expireCursors: false,
      historyEnabled: true,
      failWrites: 0,
      decideUnconfirmed: 0,
      settingsReportFirst: false,
      hold: false,
      held: [],
      askExtra: new Map(),
      versions: {},
      approvalsRequired: {},
    };
    tenants.set(key, d);
  }
  return d;
}

/** The snapshot as the real stream builds it: newest 50 commands, open asks plus 20 resolved ones. */
function snapshotOf(d: TenantData): Snapshot & { principal?: unknown } {
  const s = d.state;
  const open = s.asks.filter((a) => (a.status ?? "open") === "open");
  const resolved = s.asks.filter((a) => (a.status ?? "open") !== "open").slice(-RESOLVED_ASKS_LIMIT);
  const withExtra = (a: Snapshot["asks"][number]) => {
    const x = d.askExtra.get(a.ask_id);
    return x ? { ...a, ...x } : a;
  };
  return {
    ...s,
    worklog: s.worklog.slice(0, WORKLOG_LIMIT),
    asks: [...open, ...resolved].map(withExtra),
    compliance: { ...s.compliance, approvals_required: d.approvalsRequired } as Snapshot["compliance"],
    ...(d.principal ? { principal: d.principal } : {}),
  };
}

function sse(res: ServerResponse, event: string, payload: unknown, id?: string) {
  res.write(`event: ${event}\n${id ? `id: ${id}\n` : ""}data: ${JSON.stringify(payload)}\n\n`);
}

function publish(t: Tenant, report: AgentReport, causality: ReportEvent["causality"]) {
  const d = data(t);
  d.seq += 1 + Math.floor(Math.random() * 2); // ids increase but are not contiguous
  const ev: ReportEvent = { report, causality, tenant: t, ts: new Date().toISOString(), report_id: String(d.seq) };
  d.reports.push(ev);
  d.state = applyReport(d.state, ev);
  // One approval of several: the contracts' applyReport marks the ask decided; it stays open.
  const ask = (report as { ask?: { ask_id: string; approvals?: { have: number; need: number } } }).ask;
  if (report.type === "ask.decided" && ask?.approvals && ask.approvals.have < ask.approvals.need) {
    d.state = {
      ...d.state,
      asks: d.state.asks.map((a) =>
        a.ask_id === ask.ask_id ? { ...a, status: "open", decision: undefined, decided_by: undefined } : a,
      ),
    };
  }
  for (const c of d.clients) sse(c, "report", ev, ev.report_id);
}

/** A live `progress` event: no id, not stored, not replayed. */
function progress(t: Tenant, causality: ReportEvent["causality"], p: Record<string, unknown>) {
  const d = data(t);
  for (const c of d.clients) sse(c, "progress", { progress: p, causality, ts: new Date().toISOString() });
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
/** 504 ACCEPT_UNCONFIRMED: not in the contracts' catalogue yet. */
function unconfirmed(res: ServerResponse) {
  reply(res, 504, {
    error: { code: "ACCEPT_UNCONFIRMED", message: "The request may have been accepted", recoverable: true },
    correlation_id: randomUUID(),
  });
}

/** True (and answered 503) when a write is to fail with nothing stored. */
function failWrite(d: TenantData, res: ServerResponse): boolean {
  if (d.failWrites <= 0) return false;
  d.failWrites--;
  fail(res, apiError("DEPENDENCY_UNAVAILABLE"));
  return true;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const later = (ms: number, fn: () => void) => setTimeout(fn, ms);

/** `instant` as ISO 8601 with `tz`'s offset, as the real calendar handler writes slots. */
function zoned(instant: number, tz: string): string {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: tz,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(instant);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const wall = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  const off = Math.round((wall - instant) / 60_000);
  const abs = Math.abs(off);
  const sign = off < 0 ? "-" : "+";
  return `${new Date(wall).toISOString().slice(0, 19)}${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

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
      const tz = (params.timezone as string) ?? "UTC";
      return {
        options: [0, 1, 2].map((i) => ({
          start: zoned(start + i * 2 * 3600_000, tz),
          end: zoned(start + i * 2 * 3600_000 + dur, tz),
        })),
      };
    }
    default:
      return {};
  }
}

/**
 * Reports of one GREEN command that ran: started, live progress for drafts and summaries, then
 * completed (or failed), held until `/__mock/release` while `/__mock/hold` is on.
 */
function runGreen(t: Tenant, type: CommandType, params: Record<string, unknown>, c: ReportEvent["causality"]) {
  const spec = COMMAND_TYPES[type];
  const command = { command_id: c.command_id as string, type };
  later(300, () =>
    publish(t, { type: "command.started", status: "running", title: `${spec.title} started`, command }, c),
  );
  const streams = type === "draft_email.create" || type === "doc.summary.create";
  if (streams) {
    const chunks = ["Dear colleague, ", "thank you ", "for your message. "];
    chunks.forEach((text, i) => {
      later(400 + i * 150, () =>
        progress(t, c, { command_id: command.command_id, stage: "drafting", percent: (i + 1) * 30, text_delta: text }),
      );
    });
  }
  const end = () => {
    if (type === "calendar.options.create" && (params as { busy: unknown[] }).busy.length > 5) {
      publish(
        t,
        {
          type: "command.failed",
          status: "failed",
          title: `${spec.title} failed`,
          command,
          error: apiError("INSUFFICIENT_SLOTS"),
        },
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
        result: fakeResult(type, params),
      },
      c,
    );
  };
  const d = data(t);
  // Held: it ends once released, and not before its usual time.
  const released = d.hold ? new Promise<void>((resolve) => d.held.push(resolve)) : Promise.resolve();
  later(streams ? 1000 : 900, () => void released.then(end));
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
  const d = data(t);
  if (failWrite(d, res)) return;
  const command_id = cmd.command_id ?? randomUUID();
  const correlation_id = cmd.correlation_id ?? randomUUID();
  const known = d.state.worklog.find((w) => w.command_id === command_id);
  if (known) return reply(res, 202, { accepted: true, command_id, correlation_id, status: "accepted" });
  const command = { command_id, type: cmd.type };
  const c = { correlation_id, command_id };
  const risk = d.state.compliance.risk_overrides[cmd.type] ?? spec.risk;
  publish(
    t,
    { type: "command.accepted", status: "accepted", title: `${spec.title} accepted`, command, risk_level: risk },
    c,
  );
  reply(res, 202, {
    accepted: true,
    status: "accepted",
    command_id,
    correlation_id,
    first_followup_report_id: String(d.seq),
  });
  if (risk === "RED") {
    const ask_id = randomUUID();
    const requested_by = (req.headers["x-user-id"] as string | undefined) ?? "kim";
    const need = d.approvalsRequired[cmd.type] ?? 1;
    d.askExtra.set(ask_id, { requested_by, approvals_required: need, approvals: [] });
    later(600, () =>
      publish(
        t,
        {
          type: "ask.created",
          status: "pending_approval",
          title: `Approval needed: ${spec.title}`,
          command,
          ask: {
            ask_id,
            risk_level: "RED",
            status: "open",
            action: { type: cmd.type, command_id, params: p.data as Record<string, unknown> },
            expires_at: new Date(Date.now() + (d.state.compliance.ask_ttl_seconds ?? 900) * 1000).toISOString(),
            requested_by,
            approvals_required: need,
          } as never,
        },
        { ...c, ask_id },
      ),
    );
    return;
  }
  runGreen(t, cmd.type, p.data as Record<string, unknown>, c);
}

async function handleDecide(req: IncomingMessage, res: ServerResponse, t: Tenant, askId: string) {
  const parsed = DecideRequest.safeParse(JSON.parse((await body(req)).toString("utf8") || "{}"));
  if (!parsed.success) return fail(res, apiError("VALIDATION_FAILED", undefined, zodDetails(parsed.error)));
  const d = data(t);
  const ask = d.state.asks.find((a) => a.ask_id === askId);
  if (!ask) return fail(res, apiError("ASK_NOT_FOUND"));
  if (failWrite(d, res)) return;
  const principal = (req.headers["x-user-id"] as string | undefined) ?? "console-user";
  const { decision, note } = parsed.data;
  const extra = d.askExtra.get(askId) ?? { requested_by: "kim", approvals_required: 1, approvals: [] };
  d.askExtra.set(askId, extra);
  const mine = extra.approvals.find((a) => a.principal === principal);
  const answerUnconfirmed = d.decideUnconfirmed > 0;
  if (answerUnconfirmed) d.decideUnconfirmed--;
  // Already decided by this principal the same way: idempotent.
  if (mine && mine.decision === decision) {
    if (answerUnconfirmed) return unconfirmed(res);
    return reply(res, 202, { accepted: true, correlation_id: parsed.data.correlation_id ?? randomUUID() });
  }
  if (mine || ask.status !== "open") return fail(res, apiError("ASK_ALREADY_DECIDED"));
  const correlation_id = parsed.data.correlation_id ?? randomUUID();
  const c = { correlation_id, command_id: ask.action.command_id, ask_id: askId };
  const command = { command_id: ask.action.command_id, type: ask.action.type };
  const at = new Date().toISOString();
  extra.approvals.push({ principal, decision, ...(note ? { note } : {}), at });
  if (note) extra.note = note;
  const need = extra.approvals_required;
  const have = extra.approvals.filter((a) => a.decision === "approve").length;
  // The decision is stored either way; the answer may still be "unconfirmed".
  if (answerUnconfirmed) unconfirmed(res);
  else reply(res, 202, { accepted: true, correlation_id, first_followup_report_id: String(d.seq + 1) });
  later(300, () =>
    publish(
      t,
      {
        type: "ask.decided",
        status: "accepted",
        title: decision === "approve" ? "Approved" : "Rejected",
        command,
        ask: {
          ask_id: askId,
          decision,
          decided_by: principal,
          ...(note ? { note } : {}),
          ...(need > 1 ? { approvals: { have, need } } : {}),
        } as never,
      },
      c,
    ),
  );
  if (decision === "approve" && have < need) return; // waits for the other approvers
  later(900, () => {
    if (decision === "reject") {
      publish(
        t,
        {
          type: "ask.cancelled",
          status: "cancelled",
          title: "External share rejected",
          command,
          ask: { ask_id: askId, decided_by: principal },
        },
        c,
      );
      return;
    }
    if (ask.action.type !== "external_share.prepare") {
      // A raised GREEN type runs its handler after approval.
      const type = ask.action.type as CommandType;
      publish(
        t,
        {
          type: "ask.executed",
          status: "done",
          title: `${COMMAND_TYPES[type].title} executed`,
          command,
          ask: { ask_id: askId },
          result: fakeResult(type, ask.action.params),
        },
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
        title: "External share executed",
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
  if (failWrite(d, res)) return;
  const s = d.state;
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
      if (patch.approvals_required && typeof patch.approvals_required === "object") {
        d.approvalsRequired = patch.approvals_required as Record<string, number>;
      }
      values = {
        ...s.compliance,
        ...patch,
        approvals_required: d.approvalsRequired,
        policy_version: s.compliance.policy_version + 1,
      };
    }
  }
  const version = (d.versions[section] ?? 0) + 1;
  d.versions[section] = version;
  const send = () =>
    publish(
      t,
      { type: "settings.updated", status: "done", title: "Settings updated", section, values, version } as never,
      { correlation_id },
    );
  if (d.settingsReportFirst) {
    // The report reaches the page before the HTTP answer does.
    send();
    await new Promise((r) => setTimeout(r, 400));
    return reply(res, 202, { accepted: true, correlation_id, first_followup_report_id: String(d.seq) });
  }
  reply(res, 202, { accepted: true, correlation_id, first_followup_report_id: String(d.seq + 1) });
  later(300, send);
}

/** `GET /agent/reports?before=&limit=`: the archive, newest first. */
function handleHistory(res: ServerResponse, d: TenantData, url: URL) {
  if (!d.historyEnabled) return fail(res, apiError("NOT_FOUND"));
  const before = parseCursor(url.searchParams.get("before")) ?? Number.MAX_SAFE_INTEGER;
  const limit = Math.min(500, Math.max(1, Number(url.searchParams.get("limit") ?? 100) || 100));
  const older = d.reports.filter((r) => Number(r.report_id) < before);
  const page = older.slice(-limit).reverse();
  const next = older.length > limit ? (page.at(-1)?.report_id ?? null) : null;
  reply(res, 200, { reports: page, next_before: next });
}

/**
 * Publishes `n` reports at `rate` per second in 10 ms ticks: synthetic commands of every GREEN type go
 * accepted → started → completed, a few in flight at a time (a load test of the console).
 */
async function burst(t: Tenant, n: number, rate: number): Promise<void> {
  const types = ["draft_email.create", "doc.summary.create", "prep_pack.create", "calendar.options.create"] as const;
  const steps: (() => void)[] = [];
  const run = Date.now().toString(36);
  for (let k = 0; steps.length < n; k++) {
    const type = types[k % types.length]!;
    const spec = COMMAND_TYPES[type];
    const command = { command_id: `burst-${run}-${k}`, type };
    const c = { correlation_id: `burst-c-${k}`, command_id: command.command_id };
    const params: Record<string, unknown> = {
      to: "kim@example.com",
      brief: `Burst message ${k}`,
      meeting_title: `Meeting ${k}`,
      attendees: ["Kim"],
      agenda: ["One", "Two"],
      text: `Sentence one of ${k}. Sentence two. Sentence three.`,
      duration_minutes: 30,
      timezone: "Asia/Seoul",
      window: { start: "2030-03-04T09:00:00+09:00", end: "2030-03-04T17:00:00+09:00" },
    };
    steps.push(() =>
      publish(
        t,
        { type: "command.accepted", status: "accepted", title: `${spec.title} accepted`, command, risk_level: "GREEN" },
        c,
      ),
    );
    steps.push(() =>
      publish(t, { type: "command.started", status: "running", title: `${spec.title} started`, command }, c),
    );
    steps.push(() =>
      publish(
        t,
        {
          type: "command.completed",
          status: "done",
          title: `${spec.title} ready`,
          command,
          result: fakeResult(type, params),
        },
        c,
      ),
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
  if (d.failStreams > 0) {
    d.failStreams--;
    return fail(res, apiError("DEPENDENCY_UNAVAILABLE"));
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
  res.write("retry: 3000\n\n");
  const raw = (req.headers["last-event-id"] as string | undefined) ?? url.searchParams.get("cursor");
  const cursor = raw == null ? null : parseCursor(raw);
  const oldest = d.reports[0] ? Number(d.reports[0].report_id) - 1 : d.seq;
  const sendSnapshot = () => {
    const id = d.seq;
    sse(
      res,
      "snapshot",
      { snapshot: snapshotOf(d), report_id: String(id), tenant: t, ts: new Date().toISOString() },
      String(id),
    );
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

/** `n` finished commands at once (for paging through history). */
function seed(t: Tenant, n: number) {
  const types = ["draft_email.create", "doc.summary.create", "prep_pack.create", "calendar.options.create"] as const;
  for (let k = 0; k < n; k++) {
    const type = types[k % types.length]!;
    const spec = COMMAND_TYPES[type];
    const command = { command_id: `seed-${Date.now().toString(36)}-${k}`, type };
    const c = { correlation_id: `seed-c-${k}`, command_id: command.command_id };
    const params = {
      to: "kim@example.com",
      subject: `Weekly update ${k + 1}`,
      brief: `Update ${k}`,
      meeting_title: `Planning ${k + 1}`,
      attendees: ["Kim", "Lee"],
      agenda: ["Budget", "Hiring"],
      text: `The release shipped on time. Customers like the new console. Support tickets went down.`,
      duration_minutes: 30,
      timezone: "Asia/Seoul",
      window: { start: "2030-03-04T09:00:00+09:00", end: "2030-03-04T17:00:00+09:00" },
    };
    publish(
      t,
      { type: "command.accepted", status: "accepted", title: `${spec.title} accepted`, command, risk_level: "GREEN" },
      c,
    );
    publish(
      t,
      {
        type: "command.completed",
        status: "done",
        title: `${spec.title} ready`,
        command,
        result: fakeResult(type, params),
      },
      c,
    );
  }
}

const MIME: Record<string, string> = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".css": "text/css",
};

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  const path = url.pathname;
  try {
    if (req.method === "GET" && (path === "/ui" || path === "/")) {
      res.writeHead(302, { location: `/ui/${url.search}` });
      return res.end();
    }
    if (req.method === "GET" && path.startsWith("/ui/")) {
      const rel = path === "/ui/" ? "index.html" : normalize(path.slice(4)).replace(/^(\.\.[/\\])+/, "");
      const file = await readFile(join(dist, rel)).catch(() => null);
      if (!file || rel.endsWith(".map")) return reply(res, 404, { error: apiError("NOT_FOUND") });
      res.writeHead(200, { "content-type": MIME[extname(rel)] ?? "application/octet-stream" });
      return res.end(file);
    }
    const t = tenantOf(req, url);
    if (!t) return fail(res, apiError("INVALID_TENANT"));
    const d = data(t);
    if (req.method === "GET" && path === "/agent/reports/stream") return handleStream(req, res, t, url);
    if (req.method === "GET" && path === "/agent/reports") return handleHistory(res, d, url);
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
    if (req.method === "POST" && path.startsWith("/__mock/")) {
      const q = url.searchParams;
      switch (path.slice("/__mock/".length)) {
        case "fail-streams":
          d.failStreams = Number(q.get("n") ?? 1);
          return reply(res, 200, { ok: true });
        case "expire-cursors":
          d.expireCursors = true;
          return reply(res, 200, { ok: true });
        case "drop": {
          const n = d.clients.size;
          for (const c of d.clients) c.destroy();
          return reply(res, 200, { ok: true, dropped: n });
        }
        case "redeliver": {
          const last = d.reports.at(-1);
          if (last) for (const c of d.clients) sse(c, "report", last, last.report_id);
          return reply(res, 200, { ok: true, report_id: last?.report_id });
        }
        case "retention": {
          const keep = Number(q.get("keep") ?? 1);
          const cut = d.reports.length - keep;
          if (cut > 0) {
            d.base = d.reports.slice(0, cut).reduce(applyReport, d.base);
            d.reports = d.reports.slice(cut);
          }
          return reply(res, 200, { ok: true, oldest: d.reports[0]?.report_id });
        }
        case "burst": {
          const started = Date.now();
          await burst(t, Number(q.get("n") ?? 5000), Number(q.get("rate") ?? 500));
          return reply(res, 200, { ok: true, ms: Date.now() - started, last: d.reports.at(-1)?.report_id });
        }
        case "seed":
          seed(t, Number(q.get("n") ?? 120));
          return reply(res, 200, { ok: true, last: d.reports.at(-1)?.report_id });
        case "history":
          d.historyEnabled = q.get("enabled") !== "0";
          return reply(res, 200, { ok: true });
        case "principal": {
          const roles = (q.get("roles") ?? "").split(",").filter(Boolean);
          d.principal = roles.length > 0 ? { id: q.get("id") ?? "user-1", roles } : undefined;
          return reply(res, 200, { ok: true, principal: d.principal ?? null });
        }
        case "fail-writes":
          d.failWrites = Number(q.get("n") ?? 1);
          return reply(res, 200, { ok: true });
        case "decide-unconfirmed":
          d.decideUnconfirmed = Number(q.get("n") ?? 1);
          return reply(res, 200, { ok: true });
        case "settings-report-first":
          d.settingsReportFirst = q.get("on") !== "0";
          return reply(res, 200, { ok: true });
        case "hold":
          d.hold = q.get("on") !== "0";
          return reply(res, 200, { ok: true });
        case "release": {
          const held = d.held.splice(0);
          for (const release of held) release();
          return reply(res, 200, { ok: true, released: held.length });
        }
      }
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

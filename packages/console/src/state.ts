/**
 * What the console knows about one tenant, and the only ways it changes.
 *
 * Rules (docs/contract.md "The report stream", LOCKED rule 1: nothing else changes state):
 * - `snapshot` replaces everything; its `report_id` becomes the cursor.
 * - `report` is applied unless its `report_id` is at or below the cursor (delivery is at least
 *   once; dedupe by `report_id`).
 * - `error` `CURSOR_EXPIRED` marks a resync: the next snapshot completes it.
 * - `progress` (live only, no id) updates the running command's progress; it is never state.
 *
 * Cost: a report costs O(1). Entries are kept in maps keyed by `command_id` / `ask_id`; a report
 * is applied with the contracts' own {@link applyReport} to a one-entry snapshot holding just
 * the entry and ask it names, so the transition rules stay the ones the back end uses while the
 * work does not grow with the worklog. Changed entries get a new object, unchanged ones keep
 * theirs, so rows can be memoised by identity.
 *
 * Memory is bounded: at most {@link LIVE_LIMIT} entries are live; the least recently updated one
 * is dropped first and stays reachable through the history endpoint (`historyBefore` moves so
 * that "load older" fetches it again). The structure is mutable for speed; `rev` counters tell
 * subscribers what changed. Pure otherwise: no DOM, no timers, no I/O.
 */
import {
  type Ask,
  applyReport,
  type Compliance,
  type Decision,
  type Persona,
  type Profile,
  parseCursor,
  type ReportEvent,
  type SettingsSection,
  type Skin,
  type Snapshot,
  WORKLOG_LIMIT,
  type WorklogEntry,
  type WorklogStatus,
} from "@nexus/contracts";
import type { ProgressEvent, SnapshotWire, WireError } from "./wire.ts";

/** What the connection badge shows. */
export type ConnState = "connecting" | "live" | "reconnecting" | "resynced";

/** The signed-in principal, when the snapshot names one (optional; absent in header mode). */
export interface Principal {
  id: string;
  roles: string[];
}

/** One approver's decision on an ask that needs several (optional field of newer back ends). */
export interface AskApproval {
  principal: string;
  decision: Decision;
  note?: string;
  at: string;
}

/** An ask with the optional fields the console shows when the back end sends them. */
export interface AskView extends Ask {
  /** Who sent the command that raised the ask. */
  requested_by?: string;
  /** How many distinct approvers the tenant requires for this action (default 1). */
  approvals_required?: number;
  /** Decisions so far, oldest first. */
  approvals?: AskApproval[];
  /** From the latest `ask.decided`: approvals collected and needed. */
  approval_progress?: { have: number; need: number };
  /** The decision's note. */
  note?: string;
  /** When the decision was recorded (the `ask.decided` report's `ts`). */
  decided_at?: string;
}

/** Live progress of a running command (from `progress` events; never stored by the server). */
export interface Progress {
  stage: string;
  percent?: number;
  /** Streamed text so far (at most {@link PROGRESS_TEXT_LIMIT} characters, the newest kept). */
  text: string;
}

/** The four settings sections, as the stream last told them. A new object when any changes. */
export interface SettingsState {
  profile: Profile;
  persona: Persona;
  skin: Skin;
  compliance: Compliance & { approvals_required?: Record<string, number>; allow_self_approval?: boolean };
}

/** Everything the page renders for one tenant. Mutated in place by the functions below. */
export interface LiveState {
  /** `report_id` of the last snapshot, `null` before the first. */
  snapshotId: number | null;
  /** The cursor: `report_id` of the last snapshot or applied report. */
  lastId: number | null;
  /** Live entries by command id, least recently updated first (a `Map` keeps insertion order). */
  live: Map<string, WorklogEntry>;
  /** Entries loaded from the history endpoint, newest first; never also in {@link LiveState.live}. */
  older: Map<string, WorklogEntry>;
  /** `report_id` of the last report that touched each live entry (snapshot entries: the snapshot's). */
  touched: Map<string, number>;
  asks: Map<string, AskView>;
  /** Command ids accepted or running; kept even when their entry leaves the live window. */
  inFlight: Set<string>;
  settings: SettingsState | null;
  /** Highest `settings.updated` `version` applied per section. */
  sectionVersion: Partial<Record<SettingsSection, number>>;
  /** `settings.updated` reports seen, by correlation id (the newest {@link SEEN_LIMIT}). */
  settingsSeen: Map<string, SettingsSection>;
  /** Correlation id of the `settings.updated` that last changed each section. */
  sectionCid: Partial<Record<SettingsSection, string>>;
  /** Bumped on every `settings.updated` (applied or not) and snapshot. */
  settingsRev: number;
  principal: Principal | null;
  /** `report_id`s applied, in order (for tests: each appears once). */
  applied: string[];
  connState: ConnState;
  resyncPending: boolean;
  lastStreamError: WireError | null;
  /** The most recently applied report. */
  lastReport: ReportEvent | null;
  progress: Map<string, Progress>;
  /** Reports with a `report_id` below this are only in the history endpoint; `null` before a snapshot. */
  historyBefore: number | null;
  /** The history endpoint said there is nothing older. */
  historyDone: boolean;
  /**
   * There may be entries older than those shown: the snapshot had entries (the server keeps only
   * its newest `STREAM_WORKLOG_KEEP` commands in it; the history endpoint knows the rest), or
   * entries left the live window.
   */
  mayHaveOlder: boolean;
  /** The snapshot's worklog had at least {@link WORKLOG_LIMIT} entries: the page fetches one history page at once. */
  snapshotFull: boolean;
  /** Bumped on every change. */
  rev: number;
  /** Bumped when worklog entries or their order change. */
  worklogRev: number;
  /** Bumped when asks change. */
  asksRev: number;
  /** Bumped when progress changes. */
  progressRev: number;
}

/** Live entries kept at most; the least recently updated leave first. */
export const LIVE_LIMIT = 1000;
/** Entries loaded from history kept at most. */
export const OLDER_LIMIT = 5000;
/** Resolved asks kept at most (open asks are always kept). */
export const RESOLVED_LIMIT = 50;
/** `applied` keeps the newest this many ids. */
export const APPLIED_LIMIT = 10_000;
/** Settings correlation ids remembered. */
export const SEEN_LIMIT = 200;
/** Streamed progress text kept per command, in characters. */
export const PROGRESS_TEXT_LIMIT = 8000;

const IN_FLIGHT: ReadonlySet<WorklogStatus> = new Set(["accepted", "running"]);
const TERMINAL: ReadonlySet<WorklogStatus> = new Set(["done", "failed", "cancelled"]);

/** A fresh state: nothing received, `connecting`. */
export function createLiveState(): LiveState {
  return {
    snapshotId: null,
    lastId: null,
    live: new Map(),
    older: new Map(),
    touched: new Map(),
    asks: new Map(),
    inFlight: new Set(),
    settings: null,
    sectionVersion: {},
    settingsSeen: new Map(),
    sectionCid: {},
    settingsRev: 0,
    principal: null,
    applied: [],
    connState: "connecting",
    resyncPending: false,
    lastStreamError: null,
    lastReport: null,
    progress: new Map(),
    historyBefore: null,
    historyDone: false,
    mayHaveOlder: false,
    snapshotFull: false,
    rev: 0,
    worklogRev: 0,
    asksRev: 0,
    progressRev: 0,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads `principal: {id, roles[]}` when well formed. */
export function readPrincipal(v: unknown): Principal | null {
  if (!isObject(v) || typeof v.id !== "string" || !Array.isArray(v.roles)) return null;
  return { id: v.id, roles: v.roles.filter((r): r is string => typeof r === "string") };
}

function readApprovals(v: unknown): AskApproval[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v
    .filter(
      (a): a is Record<string, unknown> =>
        isObject(a) && typeof a.principal === "string" && (a.decision === "approve" || a.decision === "reject"),
    )
    .map((a) => ({
      principal: a.principal as string,
      decision: a.decision as Decision,
      ...(typeof a.note === "string" && a.note ? { note: a.note } : {}),
      at: typeof a.at === "string" ? a.at : "",
    }));
}

function readProgressCount(v: unknown): { have: number; need: number } | undefined {
  return isObject(v) && typeof v.have === "number" && typeof v.need === "number"
    ? { have: v.have, need: v.need }
    : undefined;
}

/** The optional fields of an ask as received (extra keys survive parsing, see wire.ts). */
function askExtras(raw: Record<string, unknown>): Partial<AskView> {
  const out: Partial<AskView> = {};
  if (typeof raw.requested_by === "string") out.requested_by = raw.requested_by;
  if (typeof raw.approvals_required === "number") out.approvals_required = raw.approvals_required;
  const approvals = readApprovals(raw.approvals);
  if (approvals) out.approvals = approvals;
  if (typeof raw.note === "string" && raw.note) out.note = raw.note;
  if (typeof raw.decided_at === "string") out.decided_at = raw.decided_at;
  return out;
}

function bump(s: LiveState, what: { worklog?: boolean; asks?: boolean; progress?: boolean }): void {
  s.rev++;
  if (what.worklog) s.worklogRev++;
  if (what.asks) s.asksRev++;
  if (what.progress) s.progressRev++;
}

function trackFlight(s: LiveState, e: WorklogEntry): void {
  if (IN_FLIGHT.has(e.status)) s.inFlight.add(e.command_id);
  else s.inFlight.delete(e.command_id);
}

/** Puts `e` at the newest end of the live window and drops the oldest beyond {@link LIVE_LIMIT}. */
function putLive(s: LiveState, e: WorklogEntry, seq: number): void {
  s.live.delete(e.command_id);
  s.live.set(e.command_id, e);
  s.touched.set(e.command_id, seq);
  s.older.delete(e.command_id);
  trackFlight(s, e);
  while (s.live.size > LIVE_LIMIT) {
    const oldest = s.live.keys().next().value as string;
    const at = s.touched.get(oldest) ?? 0;
    s.live.delete(oldest);
    s.touched.delete(oldest);
    // Its reports are older than this: "load older" must ask for them again.
    if (s.historyBefore === null || at + 1 > s.historyBefore) {
      s.historyBefore = at + 1;
      s.historyDone = false;
    }
    s.mayHaveOlder = true;
  }
}

function pruneResolved(s: LiveState): void {
  let resolved = 0;
  for (const a of s.asks.values()) if ((a.status ?? "open") !== "open") resolved++;
  if (resolved <= RESOLVED_LIMIT) return;
  for (const [id, a] of s.asks) {
    if (resolved <= RESOLVED_LIMIT) break;
    if ((a.status ?? "open") !== "open") {
      s.asks.delete(id);
      resolved--;
    }
  }
}

/** Replaces the whole state with a snapshot. */
export function applySnapshot(s: LiveState, ev: SnapshotWire): void {
  const id = parseCursor(ev.report_id);
  const snap = ev.snapshot;
  s.live.clear();
  s.older.clear();
  s.touched.clear();
  s.asks.clear();
  s.inFlight.clear();
  s.progress.clear();
  s.sectionVersion = {};
  // Newest first in the snapshot; the live map wants least recent first.
  for (let i = snap.worklog.length - 1; i >= 0; i--) putLive(s, snap.worklog[i]!, id ?? 0);
  for (const a of snap.asks) s.asks.set(a.ask_id, { ...a, ...askExtras(a as unknown as Record<string, unknown>) });
  s.settings = {
    profile: snap.profile,
    persona: snap.assistant.persona,
    skin: snap.assistant.skin,
    compliance: snap.compliance,
  };
  s.principal = readPrincipal(snap.principal);
  s.sectionCid = {};
  s.settingsRev++;
  s.snapshotId = id;
  s.lastId = id;
  s.historyBefore = id === null ? null : id + 1;
  s.historyDone = false;
  s.mayHaveOlder = snap.worklog.length > 0;
  s.snapshotFull = snap.worklog.length >= WORKLOG_LIMIT;
  s.lastReport = null;
  s.connState = s.resyncPending ? "resynced" : "live";
  s.resyncPending = false;
  bump(s, { worklog: true, asks: true, progress: true });
}

/** The settings in the shape of a snapshot, for {@link applyReport}. */
function miniSnapshot(s: LiveState, entry: WorklogEntry | undefined, ask: AskView | undefined): Snapshot {
  const st = s.settings!;
  return {
    autopilot: { status: "idle", in_flight: 0 },
    worklog: entry ? [entry] : [],
    asks: ask ? [ask] : [],
    profile: st.profile,
    assistant: { persona: st.persona, skin: st.skin },
    compliance: st.compliance,
  };
}

/**
 * Applies one report. Returns `false` (and changes nothing) for a duplicate or a report that
 * cannot be ordered or has no snapshot to apply to.
 */
export function applyReportEvent(s: LiveState, ev: ReportEvent): boolean {
  const id = parseCursor(ev.report_id);
  if (s.settings === null || id === null) return false;
  if (s.lastId !== null && id <= s.lastId) return false;
  s.lastId = id;
  s.applied.push(ev.report_id);
  if (s.applied.length > APPLIED_LIMIT + 1000) s.applied.splice(0, s.applied.length - APPLIED_LIMIT);
  s.lastReport = ev;
  const r = ev.report;
  const what = { worklog: false, asks: false, progress: false };

  if (r.type === "settings.updated") {
    const version = (r as { version?: unknown }).version;
    const seen = s.sectionVersion[r.section];
    s.settingsSeen.delete(ev.causality.correlation_id);
    s.settingsSeen.set(ev.causality.correlation_id, r.section);
    if (s.settingsSeen.size > SEEN_LIMIT) s.settingsSeen.delete(s.settingsSeen.keys().next().value as string);
    s.settingsRev++;
    // A report older than one already applied for the section (versions may arrive out of order).
    if (typeof version === "number" && seen !== undefined && version < seen) {
      bump(s, what);
      return true;
    }
    if (typeof version === "number") s.sectionVersion[r.section] = version;
    s.sectionCid[r.section] = ev.causality.correlation_id;
    const next = applyReport(miniSnapshot(s, undefined, undefined), ev);
    s.settings = {
      profile: next.profile,
      persona: next.assistant.persona,
      skin: next.assistant.skin,
      compliance: next.compliance,
    };
    bump(s, what);
    return true;
  }

  const commandId = r.command?.command_id ?? ev.causality.command_id;
  const askId = "ask" in r ? r.ask.ask_id : ev.causality.ask_id;
  const prevEntry = commandId ? (s.live.get(commandId) ?? s.older.get(commandId)) : undefined;
  const prevAsk = askId ? s.asks.get(askId) : undefined;
  const next = applyReport(miniSnapshot(s, prevEntry, prevAsk), ev);

  const entry = next.worklog[0];
  if (entry && (entry !== prevEntry || !s.live.has(entry.command_id))) {
    putLive(s, entry, id);
    what.worklog = true;
    if (TERMINAL.has(entry.status) && s.progress.delete(entry.command_id)) what.progress = true;
  }

  const nextAsk = next.asks.find((a) => a.ask_id === askId) as AskView | undefined;
  if (nextAsk && askId) {
    let ask: AskView = nextAsk;
    const raw = (r as { ask?: Record<string, unknown> }).ask ?? {};
    if (r.type === "ask.created") ask = { ...ask, ...askExtras(raw) };
    if (r.type === "ask.decided") {
      const progress = readProgressCount(raw.approvals);
      const note = typeof raw.note === "string" && raw.note ? raw.note : undefined;
      const approvals = [...(prevAsk?.approvals ?? [])].filter((a) => a.principal !== r.ask.decided_by);
      approvals.push({ principal: r.ask.decided_by, decision: r.ask.decision, ...(note ? { note } : {}), at: ev.ts });
      ask = {
        ...ask,
        approvals,
        decided_at: ev.ts,
        ...(note ? { note } : {}),
        ...(progress ? { approval_progress: progress } : {}),
      };
      // One of several approvals: the ask stays open for the others (the N-th executes it).
      if (r.ask.decision === "approve" && progress && progress.have < progress.need) {
        ask = { ...ask, status: "open", decision: undefined, decided_by: undefined };
      }
    }
    if (r.type === "ask.cancelled" && typeof raw.decided_by === "string") ask = { ...ask, decided_by: raw.decided_by };
    if (ask !== prevAsk) {
      s.asks.set(askId, ask);
      what.asks = true;
      pruneResolved(s);
    }
  }
  bump(s, what);
  return true;
}

/** Applies a live `progress` event to the command it names (ignored once the command finished). */
export function applyProgress(s: LiveState, ev: ProgressEvent): boolean {
  const p = ev.progress;
  const entry = s.live.get(p.command_id);
  if (entry && TERMINAL.has(entry.status)) return false;
  const prev = s.progress.get(p.command_id);
  let text = (prev?.text ?? "") + (p.text_delta ?? "");
  if (text.length > PROGRESS_TEXT_LIMIT) text = text.slice(text.length - PROGRESS_TEXT_LIMIT);
  s.progress.set(p.command_id, {
    stage: p.stage,
    ...(p.percent !== undefined
      ? { percent: p.percent }
      : prev?.percent !== undefined
        ? { percent: prev.percent }
        : {}),
    text,
  });
  bump(s, { progress: true });
  return true;
}

/**
 * Adds a page of the history endpoint (`reports` newest first). A command already live or
 * already loaded keeps what it has (newer reports won); an unknown one gets an entry built by
 * {@link applyReport} from its newest report; older reports of it only fill missing fields.
 * Returns how many entries were added.
 */
export function applyHistory(s: LiveState, reports: ReportEvent[], nextBefore: string | null): number {
  if (s.settings === null) return 0;
  let added = 0;
  let lowest = s.historyBefore;
  for (const ev of reports) {
    const id = parseCursor(ev.report_id);
    if (id !== null && (lowest === null || id < lowest)) lowest = id;
    const commandId = ev.report.command?.command_id ?? ev.causality.command_id;
    if (!commandId || s.live.has(commandId)) continue;
    const known = s.older.get(commandId);
    if (known) {
      if (known.risk_level === undefined && ev.report.risk_level) {
        s.older.set(commandId, { ...known, risk_level: ev.report.risk_level });
      }
      continue;
    }
    if (s.older.size >= OLDER_LIMIT) break;
    const entry = applyReport(miniSnapshot(s, undefined, undefined), ev).worklog[0];
    if (entry) {
      s.older.set(commandId, entry);
      added++;
    }
  }
  const next = parseCursor(nextBefore);
  s.historyBefore = next ?? lowest;
  s.historyDone = nextBefore === null || s.older.size >= OLDER_LIMIT;
  bump(s, { worklog: true });
  return added;
}

/** Records a connection signal; returns whether anything changed. */
export function applyConn(s: LiveState, signal: "open" | "disconnected"): boolean {
  const next: ConnState = signal === "open" ? "live" : "reconnecting";
  if (signal === "open" && s.connState === "resynced") return false;
  if (s.connState === next) return false;
  s.connState = next;
  bump(s, {});
  return true;
}

/** Records a stream `error` event. */
export function applyStreamError(s: LiveState, error: WireError): void {
  s.lastStreamError = error;
  if (error.code === "CURSOR_EXPIRED") s.resyncPending = true;
  bump(s, {});
}

/** Every worklog entry in display order: live ones most recently updated first, then the loaded older ones. */
export function worklogOrder(s: LiveState): WorklogEntry[] {
  const out: WorklogEntry[] = new Array(s.live.size + s.older.size);
  let i = s.live.size;
  for (const e of s.live.values()) out[--i] = e;
  i = s.live.size;
  for (const e of s.older.values()) out[i++] = e;
  return out;
}

/** Asks waiting for a decision, soonest expiry first. */
export function openAsks(s: LiveState): AskView[] {
  return [...s.asks.values()]
    .filter((a) => (a.status ?? "open") === "open")
    .sort((a, b) => Date.parse(a.expires_at) - Date.parse(b.expires_at));
}

/** Decided, executed, failed, cancelled or expired asks, most recent first. */
export function resolvedAsks(s: LiveState): AskView[] {
  return [...s.asks.values()].filter((a) => (a.status ?? "open") !== "open").reverse();
}

/** Autopilot, by the rule of the contracts' `deriveAutopilot` (kept incrementally). */
export function autopilot(s: LiveState): Snapshot["autopilot"] {
  const inFlight = s.inFlight.size;
  for (const a of s.asks.values())
    if ((a.status ?? "open") === "open") return { status: "waiting_approval", in_flight: inFlight };
  return { status: inFlight > 0 ? "running" : "idle", in_flight: inFlight };
}

/** The worklog entry of a command, if known. */
export function findWork(s: LiveState, commandId: string): WorklogEntry | undefined {
  return s.live.get(commandId) ?? s.older.get(commandId);
}

/** The state as a contracts `Snapshot` (for `window.__nexus` and tests); O(n), call on demand only. */
export function snapshotView(s: LiveState): (Snapshot & { principal?: Principal }) | null {
  if (s.settings === null) return null;
  return {
    autopilot: autopilot(s),
    worklog: worklogOrder(s),
    asks: [...s.asks.values()],
    profile: s.settings.profile,
    assistant: { persona: s.settings.persona, skin: s.settings.skin },
    compliance: s.settings.compliance,
    ...(s.principal ? { principal: s.principal } : {}),
  };
}

import { z } from "zod";
import { Ask } from "./approvals.ts";
import { RiskLevel } from "./commands.ts";
import type { ReportEvent } from "./reports.ts";
import { Compliance, Persona, Profile, SettingsSection, Skin } from "./settings.ts";
import { Tenant } from "./tenant.ts";

/** Status of a command in the worklog. */
export const WorklogStatus = z.enum(["accepted", "running", "waiting_approval", "done", "failed", "cancelled"]);
export type WorklogStatus = z.infer<typeof WorklogStatus>;

/** One worklog line: the latest known state of one command. */
export const WorklogEntry = z.object({
  command_id: z.string(),
  type: z.string(),
  status: WorklogStatus,
  title: z.string(),
  updated_at: z.string(),
  risk_level: RiskLevel.optional(),
  correlation_id: z.string().optional(),
  result: z.unknown().optional(),
  error: z.unknown().optional(),
  ask_id: z.string().optional(),
});
export type WorklogEntry = z.infer<typeof WorklogEntry>;

/** Autopilot status (derived: `waiting_approval` while an ask is open, `running` while commands are in flight). */
export const Autopilot = z.object({
  status: z.enum(["idle", "running", "waiting_approval"]),
  in_flight: z.number().int(),
});
export type Autopilot = z.infer<typeof Autopilot>;

/** The tenant's state at one `report_id` (docs/contract.md "Snapshot"). */
export const Snapshot = z.object({
  autopilot: Autopilot,
  worklog: z.array(WorklogEntry),
  asks: z.array(Ask),
  profile: Profile,
  assistant: z.object({ persona: Persona, skin: Skin }),
  compliance: Compliance,
  /**
   * Per settings section, the newest settings version reflected (from the snapshot's read or a
   * later `settings.updated`); `applyReport` ignores an older `settings.updated` for a section.
   */
  settings_versions: z.partialRecord(SettingsSection, z.number().int()).optional(),
});
export type Snapshot = z.infer<typeof Snapshot>;

/** `data` of an SSE `snapshot` event. */
export const SnapshotEvent = z.object({
  snapshot: Snapshot,
  report_id: z.string(),
  tenant: Tenant,
  ts: z.string(),
});
export type SnapshotEvent = z.infer<typeof SnapshotEvent>;

/** How many worklog entries a snapshot carries, newest first. */
export const WORKLOG_LIMIT = 50;
/** How many resolved asks a snapshot carries besides all open ones. */
export const RESOLVED_ASKS_LIMIT = 20;

const IN_FLIGHT: ReadonlySet<WorklogStatus> = new Set(["accepted", "running"]);

/** Recomputes autopilot from worklog and asks; the rule is stated on {@link Autopilot}. */
export function deriveAutopilot(worklog: WorklogEntry[], asks: Ask[]): Autopilot {
  const inFlight = worklog.filter((w) => IN_FLIGHT.has(w.status)).length;
  if (asks.some((a) => (a.status ?? "open") === "open")) return { status: "waiting_approval", in_flight: inFlight };
  return { status: inFlight > 0 ? "running" : "idle", in_flight: inFlight };
}

/** Later states never go back to earlier ones when a report is re-applied (reports are idempotent). */
const WORKLOG_RANK: Record<WorklogStatus, number> = {
  accepted: 0,
  running: 1,
  waiting_approval: 2,
  done: 3,
  failed: 3,
  cancelled: 3,
};

/**
 * Applies one report to a snapshot and returns the new snapshot (the input is not mutated).
 *
 * This is the rule of docs/contract.md "Applying every report with report_id greater than the
 * snapshot's to the snapshot gives the current state". Re-applying a report is harmless
 * (reports carry entity state and worklog states never move backwards), which is what makes a
 * snapshot read after its report_id consistent (docs/architecture.md invariant 6).
 */
export function applyReport(s: Snapshot, ev: ReportEvent): Snapshot {
  const r = ev.report;
  let worklog = s.worklog;
  let asks = s.asks;
  let { profile, assistant, compliance, settings_versions } = s;

  const commandId = r.command?.command_id ?? ev.causality.command_id;
  const upsertWork = (patch: Partial<WorklogEntry> & { status: WorklogStatus }) => {
    if (!commandId) return;
    const prev = worklog.find((w) => w.command_id === commandId);
    if (prev && WORKLOG_RANK[prev.status] > WORKLOG_RANK[patch.status]) return;
    if (prev && WORKLOG_RANK[prev.status] === 3 && prev.status !== patch.status) return;
    const next: WorklogEntry = {
      ...(prev ?? {
        command_id: commandId,
        type: r.command?.type ?? "unknown",
        title: r.title,
        correlation_id: ev.causality.correlation_id,
      }),
      ...patch,
      updated_at: ev.ts,
    } as WorklogEntry;
    worklog = [next, ...worklog.filter((w) => w.command_id !== commandId)];
  };
  const setAsk = (askId: string, patch: Partial<Ask>) => {
    asks = asks.map((a) => (a.ask_id === askId ? { ...a, ...patch } : a));
  };

  switch (r.type) {
    case "command.accepted":
      upsertWork({ status: "accepted", title: r.title, risk_level: r.risk_level });
      break;
    case "command.started":
    case "command.progress":
    case "risk.warning":
      upsertWork({ status: "running", risk_level: r.risk_level });
      break;
    case "command.completed":
      upsertWork({ status: "done", title: r.title, result: r.result });
      break;
    case "command.failed":
      upsertWork({ status: "failed", title: r.title, error: r.error });
      break;
    case "ask.created":
      upsertWork({ status: "waiting_approval", ask_id: r.ask.ask_id, risk_level: r.ask.risk_level });
      if (!asks.some((a) => a.ask_id === r.ask.ask_id)) asks = [...asks, { ...r.ask, status: r.ask.status ?? "open" }];
      break;
    case "ask.decided": {
      const prev = asks.find((a) => a.ask_id === r.ask.ask_id);
      const entry = {
        principal: r.ask.decided_by,
        decision: r.ask.decision,
        ...(r.ask.note ? { note: r.ask.note } : {}),
        at: ev.ts,
      };
      const approvals = [
        ...(prev?.approvals ?? []).filter((x) => x.principal !== entry.principal || x.decision !== entry.decision),
        entry,
      ];
      // N-of-M: an approval before the N-th leaves the ask open.
      const partial = r.ask.decision === "approve" && r.ask.approvals && r.ask.approvals.have < r.ask.approvals.need;
      setAsk(
        r.ask.ask_id,
        partial
          ? { approvals }
          : {
              status: "decided",
              decision: r.ask.decision,
              decided_by: r.ask.decided_by,
              approvals,
              decided_at: ev.ts,
              ...(r.ask.note ? { note: r.ask.note } : {}),
            },
      );
      break;
    }
    case "ask.executed":
      setAsk(r.ask.ask_id, { status: "done" });
      upsertWork({ status: "done", title: r.title, result: r.result });
      break;
    case "ask.execution_failed":
      setAsk(r.ask.ask_id, { status: "failed" });
      upsertWork({ status: "failed", title: r.title, error: r.error });
      break;
    case "ask.cancelled":
      setAsk(r.ask.ask_id, { status: "cancelled" });
      upsertWork({ status: "cancelled", title: r.title });
      break;
    case "ask.expired":
      setAsk(r.ask.ask_id, { status: "expired" });
      upsertWork({ status: "cancelled", title: r.title });
      break;
    case "settings.updated":
      if (r.version !== undefined) {
        if ((settings_versions?.[r.section] ?? -1) >= r.version) break; // an older change arrived late
        settings_versions = { ...settings_versions, [r.section]: r.version };
      }
      if (r.section === "profile") profile = r.values as Profile;
      else if (r.section === "persona") assistant = { ...assistant, persona: r.values as Persona };
      else if (r.section === "skin") assistant = { ...assistant, skin: r.values as Skin };
      else compliance = r.values as Compliance;
      break;
    case "tenant.purged":
      // Everything the tenant had is gone: start again from an empty state.
      worklog = [];
      asks = [];
      profile = {} as Profile;
      assistant = { persona: {}, skin: {} };
      compliance = { risk_overrides: {}, policy_version: 0 };
      settings_versions = undefined;
      break;
  }
  return {
    autopilot: deriveAutopilot(worklog, asks),
    worklog,
    asks,
    profile,
    assistant,
    compliance,
    ...(settings_versions ? { settings_versions } : {}),
  };
}

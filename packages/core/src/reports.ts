/**
 * Builders for every report. Each takes the entity's stored state (or the message that
 * created it) and nothing else, so two writers of the same fact — the gateway and a worker, or
 * a worker and its own redelivery — build byte-identical reports, and the fact's `Nats-Msg-Id`
 * (ids.ts) makes the second publish a no-op.
 */
import {
  type AgentReport,
  type ApiError,
  COMMAND_TYPES,
  type DecisionEntry,
  isCommandType,
  RiskLevel,
  type SettingsSection,
} from "@nexus/contracts";
import type { AskRow, CommandRow } from "./db/schema.ts";

/** The registry title of a command type (`"Draft email"`), or the type itself when unknown. */
export function titleOf(type: string): string {
  return isCommandType(type) ? COMMAND_TYPES[type].title : type;
}

/** The `command` reference of a report. */
export interface CommandRef {
  command_id: string;
  type: string;
}

const ref = (c: CommandRef): CommandRef => ({ command_id: c.command_id, type: c.type });

function riskOf(row: Pick<CommandRow, "risk_level">): RiskLevel | undefined {
  const r = RiskLevel.safeParse(row.risk_level);
  return r.success ? r.data : undefined;
}

/**
 * `command.accepted`, built from the command message alone (the command-worker publishes it when
 * it first sees the command, and the same bytes again when it restates the command). It carries
 * no risk level: the worker resolves that under the tenant's policy.
 */
export function acceptedReport(c: CommandRef): AgentReport {
  return {
    type: "command.accepted",
    status: "accepted",
    title: `${titleOf(c.type)} accepted`,
    summary: `Accepted ${c.type}`,
    command: ref(c),
  };
}

/** `command.started`. */
export function startedReport(row: Pick<CommandRow, "command_id" | "type" | "risk_level">): AgentReport {
  const risk = riskOf(row);
  return {
    type: "command.started",
    status: "running",
    title: `${titleOf(row.type)} started`,
    command: ref(row),
    ...(risk ? { risk_level: risk } : {}),
  };
}

/** `risk.warning` for a YELLOW command that runs. */
export function riskWarningReport(row: Pick<CommandRow, "command_id" | "type" | "risk_level">): AgentReport {
  return {
    type: "risk.warning",
    status: "running",
    title: `${titleOf(row.type)} runs with elevated risk`,
    summary: `This tenant's compliance policy rates ${row.type} ${row.risk_level}; it runs and is flagged for review.`,
    command: ref(row),
    risk_level: riskOf(row) ?? "YELLOW",
  };
}

/** `command.progress` for a named coarse step. */
export function progressReport(c: CommandRef, step: string, percent?: number): AgentReport {
  return {
    type: "command.progress",
    status: "running",
    title: `${titleOf(c.type)}: ${step}`,
    command: ref(c),
    progress: { step, ...(percent !== undefined ? { percent } : {}) },
  };
}

/** `command.completed` with the handler's result. */
export function completedReport(
  row: Pick<CommandRow, "command_id" | "type" | "risk_level">,
  result: unknown,
): AgentReport {
  const risk = riskOf(row);
  return {
    type: "command.completed",
    status: "done",
    title: `${titleOf(row.type)} ready`,
    command: ref(row),
    ...(risk ? { risk_level: risk } : {}),
    result,
  };
}

/** `command.failed` with the standard error. */
export function failedReport(c: CommandRef, error: ApiError): AgentReport {
  return {
    type: "command.failed",
    status: "failed",
    title: `${titleOf(c.type)} failed`,
    summary: error.message,
    command: ref(c),
    error,
  };
}

/** The command type of an ask's held action. */
export function actionTypeOf(row: Pick<AskRow, "action">): string {
  return String((row.action as { type?: unknown }).type ?? "unknown");
}

const askRef = (row: AskRow): CommandRef => ({ command_id: row.command_id, type: actionTypeOf(row) });

/** `ask.created` from the stored ask (the wire form comes from `askToWire`). */
export function askCreatedReport(row: AskRow, wire: Extract<AgentReport, { type: "ask.created" }>["ask"]): AgentReport {
  const t = titleOf(actionTypeOf(row));
  const need = row.approvals_required > 1 ? ` (${row.approvals_required} approvals needed)` : "";
  return {
    type: "ask.created",
    status: "pending_approval",
    title: `Approval needed: ${t}`,
    summary: `${t} waits for a human decision until ${row.expires_at.toISOString()}${need}`,
    command: askRef(row),
    risk_level: wire.risk_level,
    ask: { ...wire, status: "open" },
  };
}

/**
 * `ask.decided` for one decision of the ask's register. `approvals` counts the distinct
 * approving principals among the decisions up to and including this one.
 */
export function askDecidedReport(
  row: AskRow,
  entry: DecisionEntry,
  approvals: { have: number; need: number },
): AgentReport {
  const t = titleOf(actionTypeOf(row));
  const partial = entry.decision === "approve" && approvals.have < approvals.need;
  return {
    type: "ask.decided",
    status: "accepted",
    title:
      entry.decision === "approve"
        ? partial
          ? `Approved ${approvals.have} of ${approvals.need}`
          : "Approved"
        : "Rejected",
    summary: `${entry.principal} ${entry.decision === "approve" ? "approved" : "rejected"} ${t}`,
    command: askRef(row),
    ask: {
      ask_id: row.ask_id,
      decision: entry.decision,
      decided_by: entry.principal,
      status: partial ? "open" : "decided",
      ...(entry.note ? { note: entry.note } : {}),
      ...(approvals.need > 1 ? { approvals } : {}),
    },
  };
}

/** `ask.executed` with the action's result. */
export function askExecutedReport(row: AskRow, result: unknown): AgentReport {
  return {
    type: "ask.executed",
    status: "done",
    title: `${titleOf(actionTypeOf(row))} executed`,
    command: askRef(row),
    ask: { ask_id: row.ask_id, status: "done" },
    result,
  };
}

/** `ask.execution_failed`. */
export function askExecutionFailedReport(row: AskRow, error: ApiError): AgentReport {
  return {
    type: "ask.execution_failed",
    status: "failed",
    title: `${titleOf(actionTypeOf(row))} failed`,
    summary: error.message,
    command: askRef(row),
    ask: { ask_id: row.ask_id, status: "failed" },
    error,
  };
}

/** `ask.cancelled` after a reject. */
export function askCancelledReport(row: AskRow): AgentReport {
  return {
    type: "ask.cancelled",
    status: "cancelled",
    title: `${titleOf(actionTypeOf(row))} rejected`,
    summary: "The action was rejected and never ran.",
    command: askRef(row),
    ask: { ask_id: row.ask_id, status: "cancelled", ...(row.decided_by ? { decided_by: row.decided_by } : {}) },
  };
}

/** `ask.expired`. */
export function askExpiredReport(row: AskRow): AgentReport {
  return {
    type: "ask.expired",
    status: "cancelled",
    title: `${titleOf(actionTypeOf(row))} expired`,
    summary: "Nobody decided in time; the action never ran.",
    command: askRef(row),
    ask: { ask_id: row.ask_id, status: "expired" },
  };
}

const SETTINGS_TITLES: Record<SettingsSection, string> = {
  profile: "Profile updated",
  persona: "Assistant persona updated",
  skin: "Assistant skin updated",
  compliance: "Compliance settings updated",
};

/** `settings.updated` with the section's full new values and the settings version it produced. */
export function settingsUpdatedReport(
  section: SettingsSection,
  values: Record<string, unknown>,
  version: number,
): AgentReport {
  return { type: "settings.updated", status: "done", title: SETTINGS_TITLES[section], section, values, version };
}

import {
  type AgentReport,
  type ApiError,
  COMMAND_TYPES,
  type CommandMessage,
  isCommandType,
  type RiskLevel,
} from "@nexus/contracts";
import type { AskRow } from "./db/asks.ts";
import { askToWire } from "./db/asks.ts";

/**
 * Builders for every report, so that the gateway and the workers produce byte-identical
 * reports for the same fact. That matters because a report's `Nats-Msg-Id` is derived from
 * the fact (`<tenant>.<command_id>:accepted`), so either side may publish it first and the
 * other's publish is a no-op inside the duplicate window.
 */

function titleOf(type: string): string {
  return isCommandType(type) ? COMMAND_TYPES[type].title : type;
}

const ref = (m: Pick<CommandMessage, "command_id" | "type">) => ({ command_id: m.command_id, type: m.type });

/** `command.accepted` for an accepted command (ts = `accepted_at`). */
export function acceptedReport(m: CommandMessage): AgentReport {
  return {
    type: "command.accepted",
    status: "accepted",
    title: `${titleOf(m.type)} accepted`,
    summary: `Accepted ${m.type}`,
    command: ref(m),
    risk_level: m.risk_level,
  };
}

/** `command.started`. */
export function startedReport(m: Pick<CommandMessage, "command_id" | "type" | "risk_level">): AgentReport {
  return {
    type: "command.started",
    status: "running",
    title: `${titleOf(m.type)} started`,
    command: ref(m),
    risk_level: m.risk_level,
  };
}

/** `risk.warning` for a YELLOW command that runs. */
export function riskWarningReport(m: Pick<CommandMessage, "command_id" | "type" | "risk_level">): AgentReport {
  return {
    type: "risk.warning",
    status: "running",
    title: `${titleOf(m.type)} runs with elevated risk`,
    summary: `This tenant's compliance policy rates ${m.type} ${m.risk_level}; it runs and is flagged for review.`,
    command: ref(m),
    risk_level: m.risk_level,
  };
}

/** `command.progress` for a named step. */
export function progressReport(
  m: Pick<CommandMessage, "command_id" | "type">,
  step: string,
  percent?: number,
): AgentReport {
  return {
    type: "command.progress",
    status: "running",
    title: `${titleOf(m.type)}: ${step}`,
    command: ref(m),
    progress: { step, ...(percent !== undefined ? { percent } : {}) },
  };
}

/** `command.completed` with the handler's result. */
export function completedReport(
  m: Pick<CommandMessage, "command_id" | "type" | "risk_level">,
  result: unknown,
  summary?: string,
): AgentReport {
  return {
    type: "command.completed",
    status: "done",
    title: `${titleOf(m.type)} ready`,
    ...(summary ? { summary } : {}),
    command: ref(m),
    risk_level: m.risk_level,
    result,
  };
}

/** `command.failed` with the standard error. */
export function failedReport(m: Pick<CommandMessage, "command_id" | "type">, error: ApiError): AgentReport {
  return {
    type: "command.failed",
    status: "failed",
    title: `${titleOf(m.type)} failed`,
    summary: error.message,
    command: ref(m),
    error,
  };
}

/** `ask.created` from the stored ask. */
export function askCreatedReport(row: AskRow, commandType: string): AgentReport {
  return {
    type: "ask.created",
    status: "pending_approval",
    title: `Approval needed: ${titleOf(commandType)}`,
    summary: `${titleOf(commandType)} waits for a human decision until ${row.expires_at.toISOString()}`,
    command: { command_id: row.command_id, type: commandType },
    risk_level: row.risk_level as RiskLevel,
    ask: { ...askToWire(row), status: "open" },
  };
}

const actionType = (row: AskRow) => String((row.action as { type?: unknown }).type ?? "unknown");

/** `ask.decided` from the decided ask (ts = `decided_at`). */
export function askDecidedReport(row: AskRow): AgentReport {
  return {
    type: "ask.decided",
    status: "accepted",
    title: row.decision === "approve" ? "Approved" : "Rejected",
    summary: `${row.decided_by} ${row.decision === "approve" ? "approved" : "rejected"} ${titleOf(actionType(row))}`,
    command: { command_id: row.command_id, type: actionType(row) },
    ask: {
      ask_id: row.ask_id,
      decision: row.decision ?? "reject",
      decided_by: row.decided_by ?? "anonymous",
      status: "decided",
    },
  };
}

/** `ask.executed` with the action's result. */
export function askExecutedReport(row: AskRow, result: unknown): AgentReport {
  return {
    type: "ask.executed",
    status: "done",
    title: `${titleOf(actionType(row))} executed`,
    command: { command_id: row.command_id, type: actionType(row) },
    ask: { ask_id: row.ask_id, status: "done" },
    result,
  };
}

/** `ask.execution_failed`. */
export function askExecutionFailedReport(row: AskRow, error: ApiError): AgentReport {
  return {
    type: "ask.execution_failed",
    status: "failed",
    title: `${titleOf(actionType(row))} failed`,
    summary: error.message,
    command: { command_id: row.command_id, type: actionType(row) },
    ask: { ask_id: row.ask_id, status: "failed" },
    error,
  };
}

/** `ask.cancelled` after a reject. */
export function askCancelledReport(row: AskRow): AgentReport {
  return {
    type: "ask.cancelled",
    status: "cancelled",
    title: `${titleOf(actionType(row))} rejected`,
    summary: "The action was rejected and never ran.",
    command: { command_id: row.command_id, type: actionType(row) },
    ask: { ask_id: row.ask_id, status: "cancelled", ...(row.decided_by ? { decided_by: row.decided_by } : {}) },
  };
}

/** `ask.expired`. */
export function askExpiredReport(row: AskRow): AgentReport {
  return {
    type: "ask.expired",
    status: "cancelled",
    title: `${titleOf(actionType(row))} expired`,
    summary: "Nobody decided in time; the action never ran.",
    command: { command_id: row.command_id, type: actionType(row) },
    ask: { ask_id: row.ask_id, status: "expired" },
  };
}

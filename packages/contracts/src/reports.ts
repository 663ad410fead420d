import { z } from "zod";
import { Ask, AskStatus, Decision } from "./approvals.ts";
import { RiskLevel } from "./commands.ts";
import { ApiError } from "./errors.ts";
import { SettingsSection } from "./settings.ts";
import { Tenant } from "./tenant.ts";

/** `status` values of reports (docs/contract.md "AgentReport"). */
export const ReportStatus = z.enum(["accepted", "running", "done", "failed", "pending_approval", "cancelled"]);
export type ReportStatus = z.infer<typeof ReportStatus>;

const CommandRef = z.object({ command_id: z.string(), type: z.string() });

const base = {
  title: z.string(),
  summary: z.string().optional(),
  command: CommandRef.optional(),
  risk_level: RiskLevel.optional(),
};

/** The AgentReport union, discriminated by `type`. Later fields are optional so old clients keep parsing. */
export const AgentReport = z.discriminatedUnion("type", [
  z.object({ type: z.literal("command.accepted"), status: z.literal("accepted"), ...base }),
  z.object({ type: z.literal("command.started"), status: z.literal("running"), ...base }),
  z.object({
    type: z.literal("command.progress"),
    status: z.literal("running"),
    ...base,
    progress: z.object({ step: z.string(), percent: z.number().min(0).max(100).optional() }).optional(),
  }),
  z.object({ type: z.literal("command.completed"), status: z.literal("done"), ...base, result: z.unknown() }),
  z.object({ type: z.literal("command.failed"), status: z.literal("failed"), ...base, error: ApiError }),
  z.object({ type: z.literal("risk.warning"), status: z.literal("running"), ...base }),
  z.object({ type: z.literal("ask.created"), status: z.literal("pending_approval"), ...base, ask: Ask }),
  z.object({
    type: z.literal("ask.decided"),
    status: z.literal("accepted"),
    ...base,
    ask: z.object({
      ask_id: z.string(),
      decision: Decision,
      decided_by: z.string(),
      status: AskStatus.optional(),
      note: z.string().optional(),
      /** N-of-M progress: distinct approvals so far and needed. */
      approvals: z.object({ have: z.number().int(), need: z.number().int() }).optional(),
    }),
  }),
  z.object({
    type: z.literal("ask.executed"),
    status: z.literal("done"),
    ...base,
    ask: z.object({ ask_id: z.string(), status: AskStatus.optional() }),
    result: z.unknown(),
  }),
  z.object({
    type: z.literal("ask.execution_failed"),
    status: z.literal("failed"),
    ...base,
    ask: z.object({ ask_id: z.string(), status: AskStatus.optional() }),
    error: ApiError,
  }),
  z.object({
    type: z.literal("ask.cancelled"),
    status: z.literal("cancelled"),
    ...base,
    ask: z.object({ ask_id: z.string(), status: AskStatus.optional(), decided_by: z.string().optional() }),
  }),
  z.object({
    type: z.literal("ask.expired"),
    status: z.literal("cancelled"),
    ...base,
    ask: z.object({ ask_id: z.string(), status: AskStatus.optional() }),
  }),
  z.object({
    type: z.literal("settings.updated"),
    status: z.literal("done"),
    ...base,
    section: SettingsSection,
    values: z.record(z.string(), z.unknown()),
    /** The tenant's settings version this change produced: a client ignores an older one for the same section. */
    version: z.number().int().optional(),
  }),
  /**
   * An admin erased the tenant's data (`DELETE /admin/tenants/{org_id}/{project_id}`): every
   * report with `report_id` at or below `purge.reports_through` is gone from JetStream and the
   * archive, and commands, asks, history and settings are deleted. A client resets its state
   * to an empty snapshot. Added after the first contract: older clients ignore the type.
   */
  z.object({
    type: z.literal("tenant.purged"),
    status: z.literal("done"),
    ...base,
    purge: z.object({
      /** The highest report_id erased (decimal). */
      reports_through: z.string(),
      /** Who asked for it. */
      purged_by: z.string(),
      /** Rows deleted per table, and messages purged per stream. */
      counts: z.record(z.string(), z.number().int()),
    }),
  }),
]);
export type AgentReport = z.infer<typeof AgentReport>;
export type ReportType = AgentReport["type"];

/** `causality`: always `correlation_id`; `command_id` / `ask_id` where they apply (LOCKED rule 4). */
export const Causality = z.object({
  correlation_id: z.string(),
  command_id: z.string().optional(),
  ask_id: z.string().optional(),
});
export type Causality = z.infer<typeof Causality>;

/**
 * A report as published on `nexus.report.<org>.<project>`. `report_id` is not in it: it is the
 * JetStream sequence the stream assigns, added by the stream service.
 */
export const ReportMessage = z.object({
  report: AgentReport,
  causality: Causality,
  tenant: Tenant,
  /** ISO 8601 time the fact happened. */
  ts: z.string(),
  /**
   * W3C trace id (32 hex digits) of the trace the report belongs to — the request that sent
   * the command, followed through every message — when known. Added later: optional.
   */
  trace_id: z.string().optional(),
});
export type ReportMessage = z.infer<typeof ReportMessage>;

/** `data` of an SSE `report` event. */
export const ReportEvent = ReportMessage.extend({ report_id: z.string() });
export type ReportEvent = z.infer<typeof ReportEvent>;

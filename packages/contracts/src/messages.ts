import { z } from "zod";
import { Decision } from "./approvals.ts";
import { RiskLevel } from "./commands.ts";
import { Tenant } from "./tenant.ts";

/** Header names carried by every published message besides `Nats-Msg-Id`. */
export const HEADERS = {
  msgId: "Nats-Msg-Id",
  correlationId: "Nexus-Correlation-Id",
  org: "Nexus-Org-Id",
  project: "Nexus-Project-Id",
  traceparent: "traceparent",
} as const;

/** A command on `nexus.cmd.<org>.<project>.<type>`, as accepted by the gateway. */
export const CommandMessage = z.object({
  v: z.literal(1),
  tenant: Tenant,
  command_id: z.string(),
  type: z.string(),
  context: z.record(z.string(), z.unknown()),
  params: z.record(z.string(), z.unknown()),
  correlation_id: z.string(),
  surface: z.string().optional(),
  /** Effective risk at acceptance (default raised by the tenant's policy). */
  risk_level: RiskLevel,
  /** The tenant's compliance policy version the risk was resolved under. */
  policy_version: z.number().int(),
  /** Ask TTL in seconds in force at acceptance. */
  ask_ttl_seconds: z.number().int(),
  /** ISO 8601 acceptance time; also the `ts` of `command.accepted`. */
  accepted_at: z.string(),
  principal: z.string(),
});
export type CommandMessage = z.infer<typeof CommandMessage>;

/** A decision on `nexus.approval.<org>.<project>.<ask_id>`. */
export const DecisionMessage = z.object({
  v: z.literal(1),
  tenant: Tenant,
  ask_id: z.string(),
  command_id: z.string(),
  decision: Decision,
  note: z.string().optional(),
  correlation_id: z.string(),
  decided_by: z.string(),
  decided_at: z.string(),
});
export type DecisionMessage = z.infer<typeof DecisionMessage>;

/** A message parked on `nexus.dlq.>`: the original and why it was dead-lettered. */
export const DeadLetter = z.object({
  reason: z.enum(["poison", "retries_exhausted"]),
  error: z.string(),
  stream: z.string(),
  subject: z.string(),
  stream_seq: z.number().int(),
  deliveries: z.number().int(),
  payload: z.string(),
  ts: z.string(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

/** CONTRACT.md "Notifications for other systems": `nexus.notify.<org>.<project>.case_action`. */
export const CaseActionNotification = z
  .object({
    type: z.literal("NOTIFICATION"),
    category: z.literal("CASE_ACTION"),
    message: z.string(),
    timestamp: z.string(),
    ask_id: z.string().optional(),
    command_id: z.string().optional(),
    executor_id: z.string().optional(),
    action_type: z.enum(["APPROVE", "REJECT", "EXPIRE", "EXECUTE"]).optional(),
    approved: z.boolean().optional(),
    status_code: z.enum(["APPROVED", "REJECTED", "EXPIRED", "EXECUTED", "EXECUTION_FAILED"]).optional(),
    correlation_id: z.string().optional(),
  })
  .passthrough();
export type CaseActionNotification = z.infer<typeof CaseActionNotification>;

/**
 * Deterministic JSON: object keys sorted recursively, no whitespace. Used to hash an action's
 * arguments ("approve exactly what runs") and a command body for idempotency.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/**
 * CASE_ACTION notifications for other back-end systems (docs/contract.md "Notifications for other
 * systems"), published on `nexus.notify.<org>.<project>.case_action` into the NEXUS_NOTIFY
 * stream so a consumer that was down catches up. Each has a `Nats-Msg-Id` per ask and outcome,
 * so a re-publish is stored once within the duplicate window; consumers dedupe across it by
 * `notification_id`.
 */
import type { CaseActionNotification, ErrorCode } from "@nexus/contracts";
import type { AskRow } from "./db/schema.ts";
import type { PendingNotification } from "./effects.ts";
import { entityMsgId } from "./ids.ts";

/**
 * The contract's timestamp form: ISO 8601 with microseconds and an explicit `+00:00` offset
 * (`2026-02-11T12:00:00.000000+00:00`). JS dates carry milliseconds, so the last three digits are 0.
 */
export function notificationTimestamp(d: Date): string {
  return d.toISOString().replace(/Z$/, "000+00:00");
}

/** What happened to the ask, as one notification. */
export type CaseActionKind = "approved" | "rejected" | "expired" | "executed" | "execution_failed";

const SPEC: Record<
  CaseActionKind,
  {
    message: string;
    action_type: NonNullable<CaseActionNotification["action_type"]>;
    status_code: NonNullable<CaseActionNotification["status_code"]>;
    approved: boolean;
  }
> = {
  approved: { message: "Action approved", action_type: "APPROVE", status_code: "APPROVED", approved: true },
  rejected: { message: "Action rejected", action_type: "REJECT", status_code: "REJECTED", approved: false },
  expired: { message: "Action expired", action_type: "EXPIRE", status_code: "EXPIRED", approved: false },
  executed: { message: "Action executed", action_type: "EXECUTE", status_code: "EXECUTED", approved: true },
  execution_failed: {
    message: "Action execution failed",
    action_type: "EXECUTE",
    status_code: "EXECUTION_FAILED",
    approved: true,
  },
};

/**
 * Builds the CASE_ACTION notification of `kind` for an ask row.
 *
 * - `executor_id`: the deciding principal for approve/reject/execute, `"system"` for expiry.
 * - `correlation_id`: the decision's correlation id; the ask's own (the command's) for expiry.
 * - `timestamp`: when the fact happened (`decided_at`, or `updated_at` of the final state).
 * - Extra fields (consumers treat unknown fields as optional): `notification_id`
 *   (`<ask_id>:<status_code>`, stable across re-publishes, for deduplication), `approvers`
 *   (every approving principal, for N-of-M), `error_code` for failures.
 */
export function caseActionNotification(
  row: AskRow,
  kind: CaseActionKind,
  errorCode?: ErrorCode,
): CaseActionNotification {
  const s = SPEC[kind];
  const at = kind === "approved" || kind === "rejected" ? (row.decided_at ?? row.updated_at) : row.updated_at;
  const system = kind === "expired";
  const approvers = row.decisions.filter((d) => d.decision === "approve").map((d) => d.principal);
  return {
    type: "NOTIFICATION",
    category: "CASE_ACTION",
    message: s.message,
    timestamp: notificationTimestamp(at),
    ask_id: row.ask_id,
    command_id: row.command_id,
    executor_id: system ? "system" : (row.decided_by ?? "system"),
    action_type: s.action_type,
    approved: s.approved,
    status_code: s.status_code,
    correlation_id: system ? row.correlation_id : (row.decision_correlation_id ?? row.correlation_id),
    notification_id: `${row.ask_id}:${s.status_code}`,
    ...(approvers.length > 1 ? { approvers } : {}),
    ...(errorCode ? { error_code: errorCode } : {}),
  };
}

/** The notification as an effect, with `Nats-Msg-Id` `<org>.<project>.<ask_id>:notify.<STATUS_CODE>`. */
export function notificationPending(row: AskRow, kind: CaseActionKind, errorCode?: ErrorCode): PendingNotification {
  const tenant = { org_id: row.org_id, project_id: row.project_id };
  const n = caseActionNotification(row, kind, errorCode);
  return { tenant, msgId: entityMsgId(tenant, row.ask_id, `notify.${n.status_code}`), notification: n };
}

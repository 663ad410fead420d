import { z } from "zod";
import { Decision } from "./approvals.ts";
import { Tenant } from "./tenant.ts";

/** Header names carried by every published message besides `Nats-Msg-Id`. */
export const HEADERS = {
  msgId: "Nats-Msg-Id",
  correlationId: "Nexus-Correlation-Id",
  org: "Nexus-Org-Id",
  project: "Nexus-Project-Id",
  traceparent: "traceparent",
  /** Message kind on NEXUS_COMMANDS (`command`, `approved_action`) and the command type, for operators. */
  kind: "Nexus-Kind",
  commandType: "Nexus-Command-Type",
} as const;

/**
 * A command on `nexus.cmd.<org>.<project>.<command_id>`, as accepted by the gateway.
 *
 * The subject carries the command id, not the type: the gateway publishes it with
 * `Nats-Expected-Last-Subject-Sequence: 0`, so the publish itself is the idempotency check
 * (exactly one body is ever stored per command id). The risk level is resolved by the
 * command-worker under the tenant's policy when it processes the command.
 */
export const CommandMessage = z.object({
  v: z.literal(1),
  kind: z.literal("command").default("command"),
  tenant: Tenant,
  command_id: z.string(),
  type: z.string(),
  context: z.record(z.string(), z.unknown()),
  params: z.record(z.string(), z.unknown()),
  correlation_id: z.string(),
  surface: z.string().optional(),
  /** ISO 8601 acceptance time (gateway clock); also the `ts` of `command.accepted`. */
  accepted_at: z.string(),
  /** Who sent it (JWT `sub`, API key principal, or `x-user-id` in header mode). */
  principal: z.string(),
  /** sha256 (hex) of the canonical JSON of `{type, context, params}`: the idempotency fingerprint. */
  body_hash: z.string().regex(/^[0-9a-f]{64}$/),
  /** W3C traceparent of the accepting request, when traced. */
  traceparent: z.string().optional(),
});
export type CommandMessage = z.infer<typeof CommandMessage>;

/**
 * An approved ask's action, dispatched by the approval-worker to the command-worker on
 * `nexus.cmd.<org>.<project>.<command_id>.approved` (docs/architecture.md "The write path":
 * approved actions run in the command-worker).
 */
export const ApprovedActionMessage = z.object({
  v: z.literal(1),
  kind: z.literal("approved_action"),
  tenant: Tenant,
  ask_id: z.string(),
  command_id: z.string(),
  /** The correlation id of the deciding (N-th) approval: every report that follows carries it. */
  correlation_id: z.string(),
  /** Distinct approving principals, in decision order. */
  approved_by: z.array(z.string()).min(1),
  /** ISO 8601 time of the deciding approval. */
  approved_at: z.string(),
});
export type ApprovedActionMessage = z.infer<typeof ApprovedActionMessage>;

/** One human decision on an ask. */
export const DecisionEntry = z.object({
  principal: z.string(),
  decision: Decision,
  note: z.string().optional(),
  correlation_id: z.string(),
  /** ISO 8601, gateway clock; always before the ask's `expires_at`. */
  decided_at: z.string(),
});
export type DecisionEntry = z.infer<typeof DecisionEntry>;

/** How an ask's register stands after an event. */
export const AskOutcome = z.enum(["pending", "approved", "rejected", "expired"]);
export type AskOutcome = z.infer<typeof AskOutcome>;

/**
 * One entry of an ask's register: the messages on `nexus.approval.<org>.<project>.<ask_id>`.
 *
 * The subject is a per-ask register with optimistic concurrency: every writer (the gateway for
 * decisions, the expiry sweeper for expiry) reads the last entry and publishes the next one with
 * `Nats-Expected-Last-Subject-Sequence` = that entry's sequence (0 for the first). JetStream
 * serialises the writes, so exactly one writer wins each step; a loser re-reads and either
 * finds its decision already there (idempotent), a conflicting final outcome (409), or tries
 * again. Each entry carries the cumulative state (`decisions`, `outcome`), so the newest one
 * alone says how the ask stands; the approval-worker applies entries in sequence order and
 * skips any older than what it has applied.
 */
export const AskEventMessage = z.object({
  v: z.literal(1),
  kind: z.enum(["decision", "expiry"]),
  tenant: Tenant,
  ask_id: z.string(),
  command_id: z.string(),
  /** Every decision so far, oldest first (at most one per principal). */
  decisions: z.array(DecisionEntry),
  /** Distinct approvals needed (`approvals_required` of the ask, default 1). */
  need: z.number().int().min(1),
  outcome: AskOutcome,
  /** ISO 8601 time of this entry's event. */
  at: z.string(),
  /** Correlation id of this entry's event (the decision's; the ask's own for expiry). */
  correlation_id: z.string(),
});
export type AskEventMessage = z.infer<typeof AskEventMessage>;

/**
 * The outcome of an ask's decisions (docs/contract.md "Roles and separation of duties"): any reject
 * cancels it; `need` distinct approving principals approve it; otherwise it is pending.
 */
export function askOutcome(decisions: readonly DecisionEntry[], need: number): Exclude<AskOutcome, "expired"> {
  if (decisions.some((d) => d.decision === "reject")) return "rejected";
  const approvers = new Set(decisions.filter((d) => d.decision === "approve").map((d) => d.principal));
  return approvers.size >= need ? "approved" : "pending";
}

/**
 * What happens to a dead letter, decided by its failure code when it is written (the
 * `AUTO_REQUEUE_FAILURE_CODES` / `AUTO_HOLD_FAILURE_CODES` / `AUTO_ALARM_FAILURE_CODES` lists):
 * - `requeue`: it runs again by itself after a delay (a bounded number of times);
 * - `hold`: it waits for an operator (the admin API or `pnpm dlq`);
 * - `alarm`: it waits for an operator, and an alert fires (`nexus_dead_letter_alarms_total`).
 */
export const Disposition = z.enum(["requeue", "hold", "alarm"]);
export type Disposition = z.infer<typeof Disposition>;

/** A message parked on `nexus.dlq.>`: the original and why it was dead-lettered. */
export const DeadLetter = z.object({
  reason: z.enum(["poison", "retries_exhausted", "idempotency_conflict"]),
  /** Failure code for triage (an ErrorCode such as `HANDLER_FAILED`, or `POISON_MESSAGE`). */
  code: z.string().optional(),
  error: z.string(),
  stream: z.string(),
  subject: z.string(),
  stream_seq: z.number().int(),
  deliveries: z.number().int(),
  payload: z.string(),
  ts: z.string(),
  /** The triage of `code` when it was written (added later: optional). */
  disposition: Disposition.optional(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

/**
 * A dead letter sent back to its worker, on `nexus.cmd.<org>.<project>.<id>.requeue` (the
 * command-worker) or `nexus.approval.<org>.<project>.<id>.requeue` (the approval-worker).
 *
 * The original subject cannot take the message again: a command subject is written with
 * `Nats-Expected-Last-Subject-Sequence: 0` (one command per id, ever) and an ask's register
 * with its last sequence. So a requeue is a message of its own that wraps the original; the
 * worker handles the original inside it, and runs a failed command again only if this dead
 * letter (`dlq_seq`) was not requeued before — each dead letter runs again at most once, however
 * often its requeue is published or delivered (docs/architecture.md invariant 3).
 */
export const RequeueMessage = z.object({
  v: z.literal(1),
  kind: z.literal("requeue"),
  tenant: Tenant,
  /** Sequence of the dead letter in NEXUS_DLQ: the requeue's identity. */
  dlq_seq: z.number().int().positive(),
  /** Subject and body of the message that was dead-lettered (never itself a requeue). */
  subject: z.string(),
  payload: z.string(),
  /** Its stream sequence in the original stream (an ask register entry is applied at it). */
  stream_seq: z.number().int().nonnegative(),
  /** `auto` (triage by failure code) or the admin principal who asked. */
  requested_by: z.string(),
  /** ISO 8601. */
  requested_at: z.string(),
  /** ISO 8601: the worker does not run it before (automatic requeues wait `AUTO_REQUEUE_DELAY_MS`). */
  not_before: z.string().optional(),
  /** Automatic requeues of the original so far, this one included (0 for an operator's requeue). */
  generation: z.number().int().nonnegative().default(0),
});
export type RequeueMessage = z.infer<typeof RequeueMessage>;

/** docs/contract.md "Notifications for other systems": `nexus.notify.<org>.<project>.case_action`. */
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
 * arguments ("approve exactly what runs"), a command body for idempotency, and each link of
 * the archive's hash chain.
 *
 * For every value `JSON.parse` produces from I-JSON text this is exactly RFC 8785, the JSON
 * Canonicalization Scheme: primitives are serialised by `JSON.stringify` (ECMAScript number and
 * string serialisation, as JCS §3.2.2 prescribes), arrays keep their order, object members are
 * sorted by their keys' UTF-16 code units (the default `Array.prototype.sort` order, JCS
 * §3.2.3), and nothing else is emitted. (`canonical.test.ts` checks it against the RFC's
 * examples and the `canonicalize` reference implementation.) Members whose value is
 * `undefined` are left out, as `JSON.stringify` does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalJson(value[i]);
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let out = "{";
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    out += `${first ? "" : ","}${JSON.stringify(k)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

import { z } from "zod";
import { CorrelationId, RiskLevel } from "./commands.ts";

/** Canonical decision values. */
export const Decision = z.enum(["approve", "reject"]);
export type Decision = z.infer<typeof Decision>;

/** An ask id: what the command-worker generates (UUID) — the same alphabet as subject-safe ids. */
export const AskId = z.string().regex(/^[A-Za-z0-9_:-]{1,128}$/, "must be 1-128 characters of [A-Za-z0-9_:-]");

/**
 * `POST /approvals/{ask_id}/decide` body in either dialect: `deny` means reject and
 * `reason` means note (older clients). `action_hash`, when sent, must equal the ask's:
 * the human approves exactly the action they saw.
 */
export const DecideRequest = z
  .object({
    decision: z.enum(["approve", "reject", "deny"]),
    correlation_id: CorrelationId.optional(),
    note: z.string().max(2000).optional(),
    reason: z.string().max(2000).optional(),
    action_hash: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
  })
  .transform((b) => ({
    decision: (b.decision === "deny" ? "reject" : b.decision) as Decision,
    correlation_id: b.correlation_id,
    note: b.note ?? b.reason,
    action_hash: b.action_hash,
  }));
export type DecideRequest = z.output<typeof DecideRequest>;

/** The `202` body of a decision (LOCKED). */
export const DecisionAccepted = z.object({
  accepted: z.literal(true),
  status: z.literal("accepted").optional(),
  first_followup_report_id: z.string().optional(),
  correlation_id: z.string(),
});
export type DecisionAccepted = z.infer<typeof DecisionAccepted>;

/** Ask states: open → decided → executing → done | failed; decided(reject) → cancelled; open → expired. */
export const AskStatus = z.enum(["open", "decided", "executing", "done", "failed", "cancelled", "expired"]);
export type AskStatus = z.infer<typeof AskStatus>;

/** The held action of an ask: the command it came from and its exact arguments. */
export const AskAction = z.object({
  type: z.string(),
  command_id: z.string(),
  params: z.record(z.string(), z.unknown()),
  summary: z.string().optional(),
});
export type AskAction = z.infer<typeof AskAction>;

/** An ask as carried by `ask.created` and the snapshot. */
export const Ask = z.object({
  ask_id: z.string(),
  risk_level: RiskLevel,
  action: AskAction,
  expires_at: z.string(),
  status: AskStatus.optional(),
  action_hash: z.string().optional(),
  policy_version: z.number().int().optional(),
  decision: Decision.optional(),
  decided_by: z.string().optional(),
  /** The principal who sent the command (who may not approve it unless the tenant allows). */
  requested_by: z.string().optional(),
  /** Distinct approvals needed before the action runs (default 1). */
  approvals_required: z.number().int().optional(),
  /** Every decision so far, oldest first. */
  approvals: z
    .array(z.object({ principal: z.string(), decision: Decision, note: z.string().optional(), at: z.string() }))
    .optional(),
  /** When the ask reached its final decision (ISO 8601). */
  decided_at: z.string().optional(),
  /** The deciding note, when given. */
  note: z.string().optional(),
});
export type Ask = z.infer<typeof Ask>;

/**
 * The risk policy (docs/contract.md "Command types": GREEN runs at once, YELLOW runs with a
 * `risk.warning`, RED waits for a human approval). A tenant's compliance settings may raise a
 * type's level, never lower it, and may require several distinct approvers for a type.
 */
import { COMMAND_TYPES, type Compliance, compareRisk, isCommandType, maxRisk, type RiskLevel } from "@nexus/contracts";

/**
 * The effective risk of a command type under a tenant's overrides: the higher of the registry
 * default and the override. An unknown type is RED (fail safe).
 */
export function effectiveRisk(type: string, overrides: Record<string, RiskLevel>): RiskLevel {
  const base: RiskLevel = isCommandType(type) ? COMMAND_TYPES[type].risk : "RED";
  const o = overrides[type];
  return o ? maxRisk(base, o) : base;
}

/**
 * Checks requested overrides against the registry.
 * @returns the offending entries: unknown types and levels below a type's default.
 */
export function invalidOverrides(
  overrides: Record<string, RiskLevel>,
): { type: string; issue: "unknown_type" | "below_default"; default?: RiskLevel }[] {
  const bad: { type: string; issue: "unknown_type" | "below_default"; default?: RiskLevel }[] = [];
  for (const [type, level] of Object.entries(overrides)) {
    if (!isCommandType(type)) bad.push({ type, issue: "unknown_type" });
    else if (compareRisk(level, COMMAND_TYPES[type].risk) < 0)
      bad.push({ type, issue: "below_default", default: COMMAND_TYPES[type].risk });
  }
  return bad;
}

/** How a tenant's policy applies to one command, resolved when the command-worker receives it. */
export interface CommandPolicy {
  risk: RiskLevel;
  /** The tenant's `policy_version` it was resolved under (an approved action re-checks it). */
  policyVersion: number;
  /** Lifetime of the command's ask, if it gets one, seconds. */
  askTtlSeconds: number;
  /** Distinct approvers its ask needs (1 unless the tenant requires more for the type). */
  approvalsRequired: number;
  /** Whether the requester may approve their own RED command. */
  allowSelfApproval: boolean;
}

/**
 * Resolves {@link CommandPolicy} for `type` from a tenant's compliance settings.
 * @param defaultAskTtlSeconds the deployment's `ASK_TTL_SECONDS`, used when the tenant sets none.
 */
export function policyFor(
  type: string,
  compliance: Compliance,
  policyVersion: number,
  defaultAskTtlSeconds: number,
): CommandPolicy {
  return {
    risk: effectiveRisk(type, compliance.risk_overrides ?? {}),
    policyVersion,
    askTtlSeconds: compliance.ask_ttl_seconds ?? defaultAskTtlSeconds,
    approvalsRequired: Math.max(1, compliance.approvals_required?.[type] ?? 1),
    allowSelfApproval: compliance.allow_self_approval === true,
  };
}

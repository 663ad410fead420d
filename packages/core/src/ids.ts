/**
 * The message-id scheme: every message the system publishes carries a `Nats-Msg-Id` derived
 * from the fact it states, so that publishing it again (a retry, a redelivery, a second writer
 * of the same fact) inside the stream's duplicate window is a no-op that returns the original
 * sequence (docs/architecture.md "JetStream topology").
 *
 * Shape: `<org>.<project>.<entity>[:<step>]`. The tenant prefix matters: without it one tenant
 * could choose another tenant's command id and have its message suppressed as a duplicate.
 * Entity ids (command ids, ask ids) are 1–128 characters of `[A-Za-z0-9_:-]`.
 */
import { isTenantToken, type Tenant } from "@nexus/contracts";

/**
 * The step of a report, per entity. A step names one fact, so two writers of the same fact
 * produce the same id. Command reports use the command id as entity; ask reports the ask id;
 * settings reports the literal entity `settings`.
 *
 * - `accepted`, `started`, `risk.warning`, `completed`, `failed`: a command's lifecycle.
 * - `ask.created`: the command was held for approval (entity = command id).
 * - `decided.<k>`: the k-th decision (0-based) recorded on an ask.
 * - `cancelled`, `expired`, `executed`, `execution_failed`: an ask's final states.
 * - `progress.<stage>`: a coarse `command.progress` step.
 * - `warning.<kind>`: a `risk.warning` about a command other than its YELLOW risk level
 *   (`warning.llm_budget`: the call that crossed the tenant's soft language-model budget).
 * - `settings.<version>`: a `settings.updated` at that tenant settings version.
 * - `purged.<report_id>`: a `tenant.purged` that erased everything up to that report_id
 *   (entity = the literal `tenant`).
 */
export type ReportStep =
  | "accepted"
  | "started"
  | "risk.warning"
  | "completed"
  | "failed"
  | "ask.created"
  | `decided.${number}`
  | "cancelled"
  | "expired"
  | "executed"
  | "execution_failed"
  | `progress.${string}`
  | `warning.${string}`
  | `settings.${number}`
  | `purged.${number}`;

/** What else gets a message id: the work messages and notifications. */
export type MessageStep = "approved" | "requeue" | `notify.${string}` | `dlq.${string}`;

function prefix(t: Tenant): string {
  if (!isTenantToken(t.org_id) || !isTenantToken(t.project_id)) throw new Error("invalid tenant in message id");
  return `${t.org_id}.${t.project_id}`;
}

/**
 * `Nats-Msg-Id` of a report: `<org>.<project>.<entity>:<step>`. A command's run after its n-th
 * requeue from the dead-letter stream states its steps again as `<step>.r<n>`.
 */
export function reportMsgId(t: Tenant, entityId: string, step: ReportStep | `${ReportStep}.r${number}`): string {
  return `${prefix(t)}.${entityId}:${step}`;
}

/** `Nats-Msg-Id` of a command: `<org>.<project>.<command_id>`. */
export function commandMsgId(t: Tenant, commandId: string): string {
  return `${prefix(t)}.${commandId}`;
}

/**
 * `Nats-Msg-Id` of an ask register entry: `<org>.<project>.<ask_id>:<kind>.<n>` where `n` is
 * the number of decisions in the entry (a retried write of the same entry dedupes; a different
 * entry at the same position has another kind or count, or fails the sequence check).
 */
export function askEventMsgId(t: Tenant, askId: string, kind: "decision" | "expiry", n: number): string {
  return `${prefix(t)}.${askId}:${kind}.${n}`;
}

/** `Nats-Msg-Id` of other messages about an entity (`approved` dispatch, notifications, dead letters). */
export function entityMsgId(t: Tenant, entityId: string, step: MessageStep): string {
  return `${prefix(t)}.${entityId}:${step}`;
}

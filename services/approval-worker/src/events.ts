import { EventEmitter } from "node:events";
import type { Decision, ErrorCode, Tenant } from "@nexus/contracts";
import type { Logger } from "@nexus/platform";
import { Counter, type Registry } from "prom-client";

/** Ids every ask event carries. */
export interface AskEventBase {
  tenant: Tenant;
  ask_id: string;
  command_id: string;
}

/**
 * Typed lifecycle events of the approval-worker (`noun:verb`, graphile-worker `WorkerEvents`
 * style). Logging and metrics subscribe to them instead of being sprinkled through the logic.
 * Each event fires once per transition this process made (a redelivery that finds the
 * transition already made fires none).
 */
export interface WorkerEventMap {
  /** The worker applied a decision itself (the gateway's commit had not landed). */
  "ask:decided": [AskEventBase & { decision: Decision; decided_by: string }];
  /** decided → executing (approve). */
  "ask:executing": [AskEventBase];
  /** executing → done. */
  "ask:executed": [AskEventBase & { result: unknown }];
  /** → failed. */
  "ask:execution_failed": [AskEventBase & { code: ErrorCode }];
  /** decided(reject) → cancelled. */
  "ask:cancelled": [AskEventBase];
  /** open → expired by the sweeper. */
  "ask:expired": [AskEventBase];
  /** A decision for an ask that may no longer take it (expired, decided otherwise). */
  "decision:refused": [AskEventBase & { reason: "expired" | "conflicting_decision" | "not_approved" }];
  /** A decision message will be redelivered after `delay_ms` (transient failure). */
  "decision:retry": [{ subject: string; deliveries: number; delay_ms: number; err: unknown }];
  /** A decision message was parked on the DLQ. */
  "decision:dead_lettered": [{ subject: string; reason: "poison" | "retries_exhausted"; error: string }];
  /** A share was POSTed successfully. */
  "share:delivered": [{ share_id: string; attempts: number }];
  /** A share POST failed and will be retried. */
  "share:retry": [{ share_id: string; attempts: number; delay_ms: number; error: string }];
  /** A share gave up after the maximum number of attempts. */
  "share:failed": [{ share_id: string; attempts: number; error: string }];
}

/** The emitter of {@link WorkerEventMap}. */
export type WorkerEvents = EventEmitter<WorkerEventMap>;

/** A new {@link WorkerEvents} emitter. */
export function createWorkerEvents(): WorkerEvents {
  return new EventEmitter<WorkerEventMap>();
}

const tenantFields = (e: AskEventBase) => ({
  org_id: e.tenant.org_id,
  project_id: e.tenant.project_id,
  ask_id: e.ask_id,
  command_id: e.command_id,
});

/** Writes one log line per event (info for transitions, warn for retries and refusals). */
export function logEvents(events: WorkerEvents, logger: Logger): void {
  events.on("ask:decided", (e) => logger.info({ ...tenantFields(e), decision: e.decision }, "ask:decided"));
  events.on("ask:executing", (e) => logger.info(tenantFields(e), "ask:executing"));
  events.on("ask:executed", (e) => logger.info(tenantFields(e), "ask:executed"));
  events.on("ask:execution_failed", (e) => logger.warn({ ...tenantFields(e), code: e.code }, "ask:execution_failed"));
  events.on("ask:cancelled", (e) => logger.info(tenantFields(e), "ask:cancelled"));
  events.on("ask:expired", (e) => logger.info(tenantFields(e), "ask:expired"));
  events.on("decision:refused", (e) => logger.warn({ ...tenantFields(e), reason: e.reason }, "decision:refused"));
  events.on("decision:retry", (e) => logger.warn(e, "decision:retry"));
  events.on("decision:dead_lettered", (e) => logger.error(e, "decision:dead_lettered"));
  events.on("share:delivered", (e) => logger.info(e, "share:delivered"));
  events.on("share:retry", (e) => logger.warn(e, "share:retry"));
  events.on("share:failed", (e) => logger.error(e, "share:failed"));
}

/**
 * Registers Prometheus counters on `registry` and feeds them from `events`:
 * `nexus_approval_transitions_total{event}`, `nexus_approval_decision_failures_total{kind}`,
 * `nexus_share_deliveries_total{outcome}`.
 */
export function meterEvents(events: WorkerEvents, registry: Registry): void {
  const transitions = new Counter({
    name: "nexus_approval_transitions_total",
    help: "Ask state transitions made by this approval-worker process",
    labelNames: ["event"],
    registers: [registry],
  });
  const failures = new Counter({
    name: "nexus_approval_decision_failures_total",
    help: "Decision messages retried, refused or dead-lettered",
    labelNames: ["kind"],
    registers: [registry],
  });
  const shares = new Counter({
    name: "nexus_share_deliveries_total",
    help: "Webhook share delivery attempts by outcome",
    labelNames: ["outcome"],
    registers: [registry],
  });
  for (const ev of [
    "ask:decided",
    "ask:executing",
    "ask:executed",
    "ask:execution_failed",
    "ask:cancelled",
    "ask:expired",
  ] as const)
    events.on(ev, () => transitions.inc({ event: ev }));
  events.on("decision:refused", (e) => failures.inc({ kind: `refused_${e.reason}` }));
  events.on("decision:retry", () => failures.inc({ kind: "retry" }));
  events.on("decision:dead_lettered", (e) => failures.inc({ kind: `dead_lettered_${e.reason}` }));
  events.on("share:delivered", () => shares.inc({ outcome: "delivered" }));
  events.on("share:retry", () => shares.inc({ outcome: "retry" }));
  events.on("share:failed", () => shares.inc({ outcome: "failed" }));
}

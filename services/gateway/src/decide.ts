import { randomUUID } from "node:crypto";
import {
  type DecideRequest,
  type DecisionAccepted,
  type DecisionMessage,
  msgId,
  subjects,
  type Tenant,
} from "@nexus/contracts";
import {
  AppError,
  type AskRow,
  appendHistory,
  askDecidedReport,
  DependencyUnavailable,
  decideAsk,
  getAsk,
  isNatsConnected,
  publishJson,
  setDecidedReportId,
} from "@nexus/platform";
import type { GatewayDeps } from "./deps.ts";

const DECIDED: ReadonlySet<AskRow["status"]> = new Set(["decided", "executing", "done", "failed", "cancelled"]);

/**
 * Records a decision on an ask (CONTRACT.md "POST /approvals/{ask_id}/decide").
 *
 * In one transaction: lock the ask row, move it open → decided with a conditional update (so
 * exactly one of any number of concurrent decisions wins), append the action history, publish
 * the decision to NEXUS_APPROVALS and the `ask.decided` report, commit. Concurrent requests
 * queue on the row lock and then see the winner's decision.
 *
 * @returns the 202 body; for the same decision again, the first one's report id.
 * @throws {AppError} 404 `ASK_NOT_FOUND` (also for other tenants' asks), 409 `ASK_EXPIRED`,
 *   409 `ASK_ALREADY_DECIDED`, 409 `ACTION_CHANGED` (the `action_hash` sent is not the ask's),
 *   503 when NATS gives no PubAck (nothing recorded).
 */
export async function decide(
  deps: GatewayDeps,
  tenant: Tenant,
  principal: string,
  askId: string,
  req: DecideRequest,
): Promise<DecisionAccepted> {
  const correlationId = req.correlation_id ?? `corr-${randomUUID()}`;
  if (!isNatsConnected(deps.nc)) throw new DependencyUnavailable("nats", new Error("NATS disconnected"));
  return deps.db.transaction().execute(async (trx) => {
    const row = await getAsk(trx, tenant, askId, true);
    if (!row) throw new AppError("ASK_NOT_FOUND");
    const now = deps.now();
    if (row.status === "expired" || (row.status === "open" && row.expires_at <= now)) throw new AppError("ASK_EXPIRED");
    if (DECIDED.has(row.status)) {
      if (row.decision !== req.decision)
        throw new AppError(
          "ASK_ALREADY_DECIDED",
          `The ask was already ${row.decision === "approve" ? "approved" : "rejected"}`,
        );
      return {
        accepted: true,
        ...(row.decided_report_id ? { first_followup_report_id: row.decided_report_id } : {}),
        correlation_id: req.correlation_id ?? row.decision_correlation_id ?? correlationId,
      };
    }
    if (req.action_hash && req.action_hash !== row.action_hash) throw new AppError("ACTION_CHANGED");
    const decided = await decideAsk(trx, tenant, askId, {
      decision: req.decision,
      decided_by: principal,
      note: req.note ?? null,
      correlation_id: correlationId,
      now,
    });
    if (!decided) throw new AppError("ASK_EXPIRED");
    await appendHistory(trx, tenant, {
      ask_id: askId,
      command_id: decided.command_id,
      event: "decided",
      decision: req.decision,
      executor_id: principal,
      note: req.note ?? null,
      correlation_id: correlationId,
    });
    const message: DecisionMessage = {
      v: 1,
      tenant,
      ask_id: askId,
      command_id: decided.command_id,
      decision: req.decision,
      ...(req.note ? { note: req.note } : {}),
      correlation_id: correlationId,
      decided_by: principal,
      decided_at: now.toISOString(),
    };
    let reportId: string;
    try {
      await publishJson(
        deps.js,
        subjects.approval(tenant, askId),
        message,
        { tenant, msgId: msgId(tenant, askId, "decision"), correlationId },
        deps.config.PUBLISH_TIMEOUT_MS,
      );
      reportId = await deps.reports.publish({
        tenant,
        entityId: askId,
        step: "decided",
        report: askDecidedReport(decided),
        causality: { correlation_id: correlationId, command_id: decided.command_id, ask_id: askId },
        ts: now.toISOString(),
      });
    } catch (err) {
      throw new DependencyUnavailable("nats", err);
    }
    await setDecidedReportId(trx, tenant, askId, reportId);
    return { accepted: true, first_followup_report_id: reportId, correlation_id: correlationId };
  });
}

/**
 * `POST /approvals/{ask_id}/decide` (docs/contract.md, LOCKED): a decision is an append to the
 * ask's register in JetStream (`nexus.approval.<org>.<project>.<ask_id>`), written with
 * `Nats-Expected-Last-Subject-Sequence` = the register's newest sequence. JetStream serialises
 * racing writers — other approvers, the expiry sweeper — so exactly one wins each step and the
 * first decision wins an N = 1 ask, whatever the interleaving. The approval-worker applies the
 * register to the ask's row; no database write happens here (one read of the ask).
 */
import { randomUUID } from "node:crypto";
import {
  AskEventMessage,
  type DecideRequest,
  type DecisionAccepted,
  STREAMS,
  subjects,
  type Tenant,
} from "@nexus/contracts";
import {
  AcceptUnconfirmed,
  AppError,
  type AskRow,
  askEventMsgId,
  DependencyUnavailable,
  decidedPending,
  getAsk,
  isPgUnavailable,
  planDecision,
  readSettings,
} from "@nexus/core";
import { type LastMessage, publishGuarded, publishReport, traceIdOf } from "@nexus/messaging";
import { faultAt, type GatewayDeps } from "../deps.ts";

/** How many times a decision re-reads the register after losing a race before giving up (503). */
const MAX_APPEND_ROUNDS = 8;

/**
 * Records a decision (see the module doc).
 * @returns the 202 body; `first_followup_report_id` is the `ask.decided` report's id when known.
 * @throws {AppError} 404 `ASK_NOT_FOUND` (also another tenant's ask), 409 `ASK_EXPIRED`,
 *   409 `ASK_ALREADY_DECIDED`, 409 `ACTION_CHANGED` (the `action_hash` sent is not the ask's),
 *   403 `SELF_APPROVAL_FORBIDDEN`; {@link DependencyUnavailable} (503: nothing stored);
 *   {@link AcceptUnconfirmed} (504: the decision may be stored; repeat it to learn).
 */
export async function decide(
  deps: GatewayDeps,
  tenant: Tenant,
  principal: string,
  askId: string,
  req: DecideRequest,
  traceparent?: string,
): Promise<DecisionAccepted> {
  const correlationId = req.correlation_id ?? `corr-${randomUUID()}`;
  let row: AskRow | undefined;
  let allowSelfApproval = false;
  try {
    row = await getAsk(deps.db, tenant, askId);
    if (row) allowSelfApproval = (await readSettings(deps.db, tenant)).compliance.allow_self_approval === true;
  } catch (err) {
    if (isPgUnavailable(err)) throw new DependencyUnavailable("postgres", err, "validate");
    throw err;
  }
  if (!row) throw new AppError("ASK_NOT_FOUND");
  if (req.action_hash && req.action_hash !== row.action_hash) throw new AppError("ACTION_CHANGED");
  const subject = subjects.approval(tenant, askId);

  for (let round = 0; round < MAX_APPEND_ROUNDS; round++) {
    let last: LastMessage | null;
    try {
      last = await deps.readLast(STREAMS.approvals, subject);
    } catch (err) {
      throw new DependencyUnavailable("nats", err, "publish");
    }
    const register = last ? AskEventMessage.parse(JSON.parse(last.body)) : null;
    const plan = planDecision(row, register, {
      principal,
      decision: req.decision,
      ...(req.note ? { note: req.note } : {}),
      correlationId,
      now: deps.now(),
      allowSelfApproval,
    });
    if (plan.kind === "refuse") throw new AppError(plan.code, plan.message);
    if (plan.kind === "already") {
      const entry = plan.register.decisions[plan.index];
      const age = entry ? deps.now().getTime() - Date.parse(entry.decided_at) : Number.POSITIVE_INFINITY;
      const reportId =
        age < deps.config.DUPLICATE_WINDOW_MS - 5000
          ? await publishDecided(deps, row, plan.register, plan.index, traceparent)
          : undefined;
      return {
        accepted: true,
        status: "accepted",
        correlation_id: req.correlation_id ?? entry?.correlation_id ?? correlationId,
        ...(reportId ? { first_followup_report_id: reportId } : {}),
      };
    }
    await faultAt(deps, "decide:before-register-write");
    const out = await publishGuarded(
      deps.js,
      subject,
      JSON.stringify(plan.entry),
      {
        tenant,
        msgId: askEventMsgId(tenant, askId, "decision", plan.entry.decisions.length),
        correlationId,
        ...(traceparent ? { traceparent } : {}),
      },
      {
        expectLastSubjectSequence: last?.seq ?? 0,
        timeoutMs: deps.config.PUBLISH_TIMEOUT_MS,
        connected: deps.natsConnected,
      },
    );
    if (out.kind === "refused") throw new DependencyUnavailable("nats", out.cause, "publish");
    if (out.kind === "unconfirmed") throw new AcceptUnconfirmed("nats", out.cause, "publish");
    // Lost the race (or a duplicate id: another writer stored an entry at this position): re-read.
    if (out.kind === "conflict" || out.duplicate) continue;
    await faultAt(deps, "decide:after-register-write");
    const reportId = await publishDecided(deps, row, plan.entry, plan.entry.decisions.length - 1, traceparent);
    await faultAt(deps, "decide:after-report-publish");
    return {
      accepted: true,
      status: "accepted",
      correlation_id: correlationId,
      ...(reportId ? { first_followup_report_id: reportId } : {}),
    };
  }
  throw new DependencyUnavailable("nats", new Error("too many concurrent decisions on this ask"), "publish");
}

/** Publishes `ask.decided` for the k-th decision (the approval-worker publishes the same bytes). */
async function publishDecided(
  deps: GatewayDeps,
  row: AskRow,
  register: AskEventMessage,
  k: number,
  traceparent?: string,
): Promise<string | undefined> {
  try {
    const ack = await publishReport(
      deps.js,
      decidedPending(row, register.decisions, k),
      deps.config.PUBLISH_TIMEOUT_MS,
      traceparent,
    );
    return String(ack.seq);
  } catch (err) {
    deps.logger.warn(
      {
        err,
        org_id: row.org_id,
        project_id: row.project_id,
        ask_id: row.ask_id,
        command_id: row.command_id,
        correlation_id: register.decisions[k]?.correlation_id,
        trace_id: traceIdOf(traceparent),
      },
      "decide:decided-report-not-published",
    );
    return undefined;
  }
}

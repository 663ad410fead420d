/**
 * The approval-worker's job: apply an ask's register entries (`nexus.approval.<org>.<project>.<ask_id>`,
 * written by the gateway for decisions and by the expiry sweeper) to the ask's row, then publish
 * what each implies — `ask.decided`, `ask.cancelled`, `ask.expired`, the CASE_ACTION
 * notification, and for an approved ask the dispatch of its action to the command-worker — and
 * only then ack. Entries carry the cumulative state and are applied in sequence order, older
 * ones skipped, so any redelivery or reordering ends in the same state (invariant 3).
 *
 * A register entry that was dead-lettered comes back as a requeue
 * (`nexus.approval.<org>.<project>.<ask_id>.requeue`, see `RequeueMessage`): after its
 * `not_before` it is applied at its original sequence, so it takes effect only if no later
 * entry was applied meanwhile, and at most once.
 */
import type { JsMsg } from "@nats-io/jetstream";
import { AskEventMessage, CONSUMERS, RequeueMessage, STREAMS, subjects, tenantFromSubject } from "@nexus/contracts";
import { applyAskEvent, type Database } from "@nexus/core";
import { type JetStreamPublisher, type Parsed, publishEffects, type WorkerSpec } from "@nexus/messaging";
import type { Kysely } from "kysely";

/** A register entry and its stream sequence (for a requeue: the original's, and when it is due). */
export interface AskEventJob {
  event: AskEventMessage;
  seq: number;
  /** ISO 8601: a requeued entry is not applied before (automatic requeues wait). */
  notBefore?: string;
  /** The dead letter a requeued entry came from. */
  dlqSeq?: number;
}

/** What the job depends on. */
export interface AskEventDeps {
  db: Kysely<Database>;
  js: JetStreamPublisher;
  now: () => Date;
  publishTimeoutMs: number;
}

/**
 * Parses a register entry. Poison: not UTF-8 JSON, not an `AskEventMessage`, or published on
 * another subject than its own tenant and ask id (a body can never act on another tenant's ask).
 */
export function parseAskEvent(msg: Pick<JsMsg, "data" | "subject" | "seq">): Parsed<AskEventJob> {
  const subjectTenant = tenantFromSubject(msg.subject);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(msg.data));
  } catch {
    return { ok: false, error: "the body is not UTF-8 JSON", tenant: subjectTenant };
  }
  if ((body as { kind?: unknown } | null)?.kind === "requeue") {
    const r = RequeueMessage.safeParse(body);
    if (!r.success) return { ok: false, error: "the body does not match RequeueMessage", tenant: subjectTenant };
    const inner = r.data.subject.endsWith(".requeue")
      ? ({ ok: false, error: "a requeue wraps another requeue", tenant: subjectTenant } as const)
      : parseAskEvent({
          data: new TextEncoder().encode(r.data.payload),
          subject: r.data.subject,
          seq: r.data.stream_seq,
        });
    if (!inner.ok) return { ok: false, error: `requeued message: ${inner.error}`, tenant: subjectTenant };
    const e = inner.job.event;
    if (
      msg.subject !== subjects.requeue("approval", e.tenant, e.ask_id) ||
      r.data.tenant.org_id !== e.tenant.org_id ||
      r.data.tenant.project_id !== e.tenant.project_id
    )
      return {
        ok: false,
        error: "the tenant or ask_id of the requeue differs from its subject",
        tenant: subjectTenant,
      };
    return {
      ...inner,
      job: {
        ...inner.job,
        dlqSeq: r.data.dlq_seq,
        ...(r.data.not_before ? { notBefore: r.data.not_before } : {}),
      },
    };
  }
  const r = AskEventMessage.safeParse(body);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    return { ok: false, error: `the body does not match AskEventMessage: ${issues}`, tenant: subjectTenant };
  }
  let expected: string;
  try {
    expected = subjects.approval(r.data.tenant, r.data.ask_id);
  } catch {
    return { ok: false, error: "ask_id is not a valid subject token", tenant: subjectTenant };
  }
  if (expected !== msg.subject)
    return { ok: false, error: "the tenant or ask_id of the body differs from the subject", tenant: subjectTenant };
  return {
    ok: true,
    job: { event: r.data, seq: msg.seq },
    tenant: r.data.tenant,
    log: {
      org_id: r.data.tenant.org_id,
      project_id: r.data.tenant.project_id,
      ask_id: r.data.ask_id,
      command_id: r.data.command_id,
      correlation_id: r.data.correlation_id,
    },
  };
}

/**
 * The runner spec of the approval-worker (see `runWorker`): the durable consumer
 * `approval-worker` on NEXUS_APPROVALS, dead letters with source `approval`.
 */
export function askEventSpec(deps: AskEventDeps): WorkerSpec<AskEventJob> {
  return {
    name: "approval-worker",
    stream: STREAMS.approvals,
    consumer: CONSUMERS.approvalWorker,
    dlqSource: "approval",
    parse: parseAskEvent,
    async handle({ event, seq, notBefore }, ctx) {
      const wait = notBefore ? Date.parse(notBefore) - deps.now().getTime() : 0;
      if (wait > 0) return { snoozeMs: wait };
      const applied = await deps.db.transaction().execute((tx) => applyAskEvent(tx, event, seq, deps.now()));
      if (applied.kind === "unknown")
        return {
          reason: "poison",
          code: "ASK_NOT_FOUND",
          error: "no ask with this id and command_id for the tenant",
        };
      await publishEffects(deps.js, applied.effects, {
        timeoutMs: deps.publishTimeoutMs,
        ...(ctx.traceparent ? { traceparent: ctx.traceparent } : {}),
      });
      if (applied.kind === "applied")
        ctx.logger.info({ outcome: event.outcome, decisions: event.decisions.length }, `ask:${event.outcome}`);
    },
  };
}

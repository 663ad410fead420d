import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { type DeadLetter, DecisionMessage, msgId, subjects, type Tenant, tenantFromSubject } from "@nexus/contracts";
import { publishJson } from "@nexus/platform";

/** Tenant tokens used in headers and message ids of messages whose tenant is unknown. */
const UNKNOWN_TENANT: Tenant = { org_id: "_unknown", project_id: "_unknown" };

/** The result of {@link parseDecision}. */
export type ParsedDecision =
  | { ok: true; message: DecisionMessage }
  | { ok: false; error: string; tenant: Tenant | null };

/**
 * Parses a decision message: UTF-8 JSON matching `DecisionMessage`, published on exactly
 * `subjects.approval(message.tenant, message.ask_id)`. A body naming another tenant than its
 * subject is refused like bad JSON, so a message can never act on another tenant's ask.
 */
export function parseDecision(msg: Pick<JsMsg, "data" | "subject">): ParsedDecision {
  const subjectTenant = tenantFromSubject(msg.subject);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(msg.data));
  } catch {
    return { ok: false, error: "the body is not UTF-8 JSON", tenant: subjectTenant };
  }
  const r = DecisionMessage.safeParse(body);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    return { ok: false, error: `the body does not match DecisionMessage: ${issues}`, tenant: subjectTenant };
  }
  let expected: string;
  try {
    expected = subjects.approval(r.data.tenant, r.data.ask_id);
  } catch {
    return { ok: false, error: "ask_id is not a valid subject token", tenant: subjectTenant };
  }
  if (expected !== msg.subject)
    return { ok: false, error: "the tenant or ask_id of the body differs from the subject", tenant: subjectTenant };
  return { ok: true, message: r.data };
}

/**
 * Parks `msg` on `nexus.dlq.<org>.<project>.approval` (or `nexus.dlq._unknown._unknown.approval`)
 * as a {@link DeadLetter}, with `Nats-Msg-Id` `<org>.<project>.dlq-approval-<stream_seq>` so a
 * retried dead-lettering is a no-op.
 * @throws when JetStream does not acknowledge the publish (the caller keeps the message).
 */
export async function deadLetter(
  js: JetStreamClient,
  msg: Pick<JsMsg, "data" | "subject" | "info">,
  tenant: Tenant | null,
  reason: DeadLetter["reason"],
  error: string,
  now: Date,
  correlationId?: string,
): Promise<void> {
  const letter: DeadLetter = {
    reason,
    error,
    stream: msg.info.stream,
    subject: msg.subject,
    stream_seq: msg.info.streamSequence,
    deliveries: msg.info.deliveryCount,
    payload: Buffer.from(msg.data).toString("utf8"),
    ts: now.toISOString(),
  };
  const t = tenant ?? UNKNOWN_TENANT;
  const id = `dlq-approval-${msg.info.streamSequence}`;
  await publishJson(js, subjects.dlq(tenant, "approval"), letter, {
    tenant: t,
    msgId: msgId(t, id),
    correlationId: correlationId ?? id,
  });
}

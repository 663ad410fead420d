import { randomUUID } from "node:crypto";
import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { type AskEventMessage, type CaseActionNotification, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import {
  type AskRow,
  askEventMsgId,
  commandBodyHash,
  type Database,
  holdForApproval,
  planDecision,
  policyFor,
  receiveCommand,
} from "@nexus/core";
import { buildHeaders } from "@nexus/messaging";
import type { Kysely } from "kysely";

/** A RED command held for approval, as the command-worker leaves it: returns its ask row. */
export async function seedAsk(db: Kysely<Database>, t: Tenant, approvalsRequired = 1): Promise<AskRow> {
  const params = { recipient: "kim@example.com", channel: "email", resource: { ref: "doc:1", title: "Q3" } };
  const m = {
    v: 1 as const,
    kind: "command" as const,
    tenant: t,
    command_id: randomUUID(),
    type: "external_share.prepare",
    context: {},
    params,
    correlation_id: `c-${randomUUID().slice(0, 8)}`,
    accepted_at: new Date().toISOString(),
    principal: "requester",
    body_hash: commandBodyHash({ type: "external_share.prepare", context: {}, params }),
  };
  const policy = { ...policyFor(m.type, { risk_overrides: {}, policy_version: 0 }, 0, 3600), approvalsRequired };
  const r = await receiveCommand(db, m, policy, new Date());
  const held = await db
    .transaction()
    .execute((tx) => holdForApproval(tx, r.row, { askId: randomUUID(), policy, now: new Date() }));
  return held.row;
}

/** The next register entry for `principal`'s decision, planned as the gateway plans it. */
export function nextEntry(
  ask: AskRow,
  last: AskEventMessage | null,
  principal: string,
  decision: "approve" | "reject" = "approve",
): AskEventMessage {
  const plan = planDecision(ask, last, {
    principal,
    decision,
    correlationId: `c-${principal}`,
    now: new Date(),
    allowSelfApproval: false,
  });
  if (plan.kind !== "append") throw new Error(`unexpected plan ${plan.kind}`);
  return plan.entry;
}

/** Appends an entry to the ask's register (`msgId` overrides the gateway's, to redeliver it as new). */
export async function appendEntry(js: JetStreamClient, e: AskEventMessage, msgId?: string): Promise<number> {
  const id = msgId ?? askEventMsgId(e.tenant, e.ask_id, e.kind, e.decisions.length);
  const ack = await js.publish(subjects.approval(e.tenant, e.ask_id), JSON.stringify(e), {
    msgID: id,
    headers: buildHeaders({ tenant: e.tenant, msgId: id, correlationId: e.correlation_id }),
  });
  return ack.seq;
}

/** Every CASE_ACTION notification of a tenant in NEXUS_NOTIFY (a consumer created now still reads them all). */
export async function notifications(js: JetStreamClient, t: Tenant): Promise<CaseActionNotification[]> {
  const c = await js.consumers.get(STREAMS.notify, {
    filter_subjects: subjects.caseAction(t),
    deliver_policy: DeliverPolicy.All,
  });
  const out: CaseActionNotification[] = [];
  try {
    let pending = (await c.info(true)).num_pending;
    while (pending > 0) {
      const it = await c.fetch({ max_messages: pending, expires: 1000 });
      for await (const m of it) {
        pending = m.info.pending;
        out.push(m.json<CaseActionNotification>());
      }
    }
  } finally {
    await c.delete().catch(() => {});
  }
  return out;
}

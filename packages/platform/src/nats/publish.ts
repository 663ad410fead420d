import { randomBytes } from "node:crypto";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/nats-core";
import {
  type AgentReport,
  type Causality,
  HEADERS,
  msgId,
  type ReportMessage,
  subjects,
  type Tenant,
} from "@nexus/contracts";

/** Headers every published message carries (ARCHITECTURE.md "JetStream topology"). */
export interface PublishMeta {
  tenant: Tenant;
  /** `Nats-Msg-Id`: a retried publish with the same id inside the duplicate window is a no-op. */
  msgId: string;
  correlationId: string;
  /** W3C traceparent; a new root is generated when absent. */
  traceparent?: string;
}

/** A new W3C `traceparent` (version 00, sampled). Source: W3C Trace Context §3.2. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
}

/** Builds the NATS headers for {@link PublishMeta}. */
export function buildHeaders(meta: PublishMeta): MsgHdrs {
  const h = natsHeaders();
  h.set(HEADERS.msgId, meta.msgId);
  h.set(HEADERS.correlationId, meta.correlationId);
  h.set(HEADERS.org, meta.tenant.org_id);
  h.set(HEADERS.project, meta.tenant.project_id);
  h.set(HEADERS.traceparent, meta.traceparent ?? newTraceparent());
  return h;
}

/**
 * Publishes `payload` as UTF-8 JSON and waits for the PubAck.
 * @returns the PubAck; `duplicate: true` with the original `seq` when the msg id was seen.
 * @throws nats.js errors when no PubAck arrives within `timeoutMs` (default 5000).
 */
export async function publishJson(
  js: JetStreamClient,
  subject: string,
  payload: unknown,
  meta: PublishMeta,
  timeoutMs = 5000,
): Promise<PubAck> {
  return js.publish(subject, JSON.stringify(payload), {
    headers: buildHeaders(meta),
    msgID: meta.msgId,
    timeout: timeoutMs,
  });
}

/** The narrow interface report producers depend on. */
export interface ReportPublisher {
  /**
   * Publishes one report on the tenant's report subject with `Nats-Msg-Id`
   * `<org>.<project>.<entity_id>:<step>`.
   * @param entityId command id or ask id the report is about.
   * @param step a name unique per report of that entity (`accepted`, `started`, `completed`, …).
   * @returns the report_id (JetStream sequence, decimal string). A duplicate publish returns
   *   the original report's id.
   */
  publish(args: {
    tenant: Tenant;
    entityId: string;
    step: string;
    report: AgentReport;
    causality: Causality;
    ts: string;
    traceparent?: string;
  }): Promise<string>;
}

/** A {@link ReportPublisher} on JetStream. */
export function jetStreamReportPublisher(js: JetStreamClient, timeoutMs = 5000): ReportPublisher {
  return {
    async publish({ tenant, entityId, step, report, causality, ts, traceparent }) {
      const message: ReportMessage = { report, causality, tenant, ts };
      const ack = await publishJson(
        js,
        subjects.report(tenant),
        message,
        { tenant, msgId: msgId(tenant, entityId, step), correlationId: causality.correlation_id, traceparent },
        timeoutMs,
      );
      return String(ack.seq);
    },
  };
}

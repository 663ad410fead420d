/**
 * Publishing to JetStream: the headers every message carries, the honest classification of a
 * publish's failure (stored / not stored / unknown), effects publishing for the workers, and
 * reads of a subject's newest message (the registers).
 */
import { randomBytes } from "node:crypto";
import type { JetStreamManager, PubAck } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/nats-core";
import { HEADERS, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { type Effects, type PendingReport, reportMessageJson } from "@nexus/core";
import {
  isConnectionClosed,
  isJetStreamApiError,
  isNoResponders,
  isPermissionViolation,
  isWrongLastSequence,
} from "./errors.ts";
import { activeTraceparent, traceIdOf } from "./tracing.ts";

/**
 * The part of a nats.js `JetStreamClient` the publishers use: one method, so a test can wrap
 * it to refuse a publish or lose its PubAck (fault injection), and so a service depends on the
 * narrowest interface.
 */
export interface JetStreamPublisher {
  publish(
    subject: string,
    payload: string | Uint8Array,
    opts: {
      msgID: string;
      headers: MsgHdrs;
      timeout: number;
      expect?: { lastSubjectSequence?: number };
    },
  ): Promise<PubAck>;
}

/** Headers every published message carries (docs/architecture.md "JetStream topology"). */
export interface PublishMeta {
  tenant: Tenant;
  /** `Nats-Msg-Id`: a retried publish with the same id inside the duplicate window is a no-op. */
  msgId: string;
  correlationId: string;
  /** W3C traceparent; a new root is generated when absent. */
  traceparent?: string;
  /** More headers (e.g. `Nexus-Kind`). */
  extra?: Record<string, string>;
}

/** A new W3C `traceparent` (version 00, sampled). Source: W3C Trace Context §3.2. */
export function newTraceparent(): string {
  const hex = randomBytes(24).toString("hex");
  return `00-${hex.slice(0, 32)}-${hex.slice(32)}-01`;
}

/**
 * Builds the NATS headers for {@link PublishMeta}. Each name is distinct and the headers are
 * new, so values are appended: nats.js's `set` would first scan for the name to delete it.
 */
export function buildHeaders(meta: PublishMeta): MsgHdrs {
  const h = natsHeaders();
  h.append(HEADERS.msgId, meta.msgId);
  h.append(HEADERS.correlationId, meta.correlationId);
  h.append(HEADERS.org, meta.tenant.org_id);
  h.append(HEADERS.project, meta.tenant.project_id);
  h.append(HEADERS.traceparent, meta.traceparent ?? activeTraceparent() ?? newTraceparent());
  const extra = meta.extra;
  // `set` for these: an extra header may repeat one of the above and then replaces it.
  if (extra) for (const k in extra) h.set(k, extra[k] as string);
  return h;
}

/** Default PubAck timeout, ms. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5000;

/**
 * What became of a publish whose outcome the caller must answer honestly for:
 * - `stored`: PubAck received (`duplicate` when the msg id was already stored: `seq` is the original's);
 * - `conflict`: the server refused it because the subject's last sequence was not the expected one;
 * - `refused`: the server (or the client, before sending) refused it: nothing was stored;
 * - `unconfirmed`: it may have been stored (no PubAck in time, the connection dropped meanwhile).
 */
export type PublishOutcome =
  | { kind: "stored"; seq: number; duplicate: boolean }
  | { kind: "conflict"; cause: unknown }
  | { kind: "refused"; cause: unknown }
  | { kind: "unconfirmed"; cause: unknown };

/** Options of {@link publishGuarded}. */
export interface GuardedPublishOptions {
  /** Publish only if the subject's newest message has this sequence (0: the subject is empty). */
  expectLastSubjectSequence?: number;
  /** PubAck timeout, ms (default {@link DEFAULT_PUBLISH_TIMEOUT_MS}). */
  timeoutMs?: number;
  /**
   * Whether the connection is up right now. While disconnected, nats.js buffers a publish and
   * sends it after reconnecting, so a publish that then times out could still be stored:
   * checking first lets a disconnected client answer "refused" (nothing left this process).
   */
  connected?: () => boolean;
}

/**
 * Publishes one message and classifies the result (see {@link PublishOutcome}). Never throws
 * for NATS failures. The classification follows what each failure proves:
 * a JetStream API error (wrong last sequence, stream full, …), "no responders" (no stream
 * captures the subject) and a permissions violation are answers from the server, so nothing
 * was stored; a timeout or a
 * connection lost mid-request proves nothing, so the publish is `unconfirmed`.
 */
export async function publishGuarded(
  js: JetStreamPublisher,
  subject: string,
  payload: string | Uint8Array,
  meta: PublishMeta,
  o: GuardedPublishOptions = {},
): Promise<PublishOutcome> {
  if (o.connected && !o.connected()) return { kind: "refused", cause: new Error("NATS is disconnected") };
  try {
    const ack = await js.publish(subject, payload, {
      msgID: meta.msgId,
      headers: buildHeaders(meta),
      timeout: o.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS,
      ...(o.expectLastSubjectSequence !== undefined
        ? { expect: { lastSubjectSequence: o.expectLastSubjectSequence } }
        : {}),
    });
    return { kind: "stored", seq: ack.seq, duplicate: ack.duplicate };
  } catch (cause) {
    if (isWrongLastSequence(cause)) return { kind: "conflict", cause };
    if (isJetStreamApiError(cause) || isNoResponders(cause) || isPermissionViolation(cause))
      return { kind: "refused", cause };
    if (isConnectionClosed(cause)) return { kind: "unconfirmed", cause };
    return { kind: "unconfirmed", cause };
  }
}

/**
 * Publishes every effect in order — reports, then notifications, then work messages — and
 * waits for all PubAcks. The publishes are pipelined on the one connection (sent back to back,
 * acknowledged together); NATS keeps a connection's messages in order, so the stream stores
 * them in this order.
 * @returns the report sequences (report_ids), in the order of `effects.reports`.
 * @throws the first nats.js error: the caller naks its input so the transition re-runs and
 *   restates the same effects (same msg ids: whatever was stored is not stored twice).
 */
export async function publishEffects(
  js: JetStreamPublisher,
  effects: Effects,
  o: { timeoutMs?: number; traceparent?: string } = {},
): Promise<number[]> {
  const timeout = o.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  const pending: Promise<PubAck>[] = [];
  for (const r of effects.reports) pending.push(publishReport(js, r, timeout, o.traceparent));
  for (const n of effects.notifications)
    pending.push(
      js.publish(subjects.caseAction(n.tenant), JSON.stringify(n.notification), {
        msgID: n.msgId,
        headers: buildHeaders({
          tenant: n.tenant,
          msgId: n.msgId,
          correlationId: n.notification.correlation_id ?? n.msgId,
          traceparent: o.traceparent,
        }),
        timeout,
      }),
    );
  for (const m of effects.messages)
    pending.push(
      js.publish(m.subject, JSON.stringify(m.payload), {
        msgID: m.msgId,
        headers: buildHeaders({
          tenant: m.tenant,
          msgId: m.msgId,
          correlationId: m.correlationId,
          traceparent: o.traceparent,
          extra: m.headers,
        }),
        timeout,
      }),
    );
  const acks = await Promise.all(pending);
  return acks.slice(0, effects.reports.length).map((a) => a.seq);
}

/**
 * Publishes one report on its tenant's report subject and waits for the PubAck. The report
 * carries the trace id of the active span, or of `traceparent` (ReportMessage `trace_id`), so
 * its SSE frame names the trace of the command it is about.
 */
export function publishReport(
  js: JetStreamPublisher,
  r: PendingReport,
  timeoutMs = DEFAULT_PUBLISH_TIMEOUT_MS,
  traceparent?: string,
): Promise<PubAck> {
  const tp = activeTraceparent() ?? traceparent;
  return js.publish(subjects.report(r.tenant), reportMessageJson(r, traceIdOf(tp)), {
    msgID: r.msgId,
    headers: buildHeaders({
      tenant: r.tenant,
      msgId: r.msgId,
      correlationId: r.causality.correlation_id,
      traceparent: tp,
    }),
    timeout: timeoutMs,
  });
}

/** The newest message on a subject: its stream sequence and UTF-8 body. */
export interface LastMessage {
  seq: number;
  body: string;
}

/** Reads the newest message on `subject` (a register), or `null` when the subject has none. */
export type LastMessageReader = (stream: string, subject: string) => Promise<LastMessage | null>;

/**
 * A {@link LastMessageReader} over JetStream's direct get (`allow_direct` streams, served by
 * any replica) with the stream-info API as the fallback for streams without it.
 * @throws nats.js errors when JetStream does not answer.
 */
export function lastMessageReader(jsm: JetStreamManager): LastMessageReader {
  return async (stream, subject) => {
    const m = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    if (!m) return null;
    return { seq: m.seq, body: m.string() };
  };
}

/** The stream names whose subjects are registers read by {@link lastMessageReader}. */
export const REGISTER_STREAMS = { commands: STREAMS.commands, approvals: STREAMS.approvals } as const;

/**
 * Purges messages of one stream (JetStream `STREAM.PURGE`): those on subjects matching
 * `filter`, and only below sequence `belowSeq` when given.
 * @returns how many messages were purged.
 * @throws nats.js errors when JetStream does not answer or refuses.
 */
export type StreamPurger = (stream: string, filter: string, belowSeq?: number) => Promise<number>;

/** A {@link StreamPurger} over a JetStream manager. */
export function streamPurger(jsm: JetStreamManager): StreamPurger {
  return async (stream, filter, belowSeq) => {
    const r = await jsm.streams.purge(stream, belowSeq !== undefined ? { filter, seq: belowSeq } : { filter });
    return r.purged;
  };
}

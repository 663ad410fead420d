/**
 * Dead-letter operations: triage by failure code, requeue, listing, reading and dropping the
 * dead letters of NEXUS_DLQ (`nexus.dlq.<org>.<project>.<cmd|approval>`).
 *
 * Terms:
 * - dead letter: a {@link DeadLetter} on NEXUS_DLQ; its id is its sequence in that stream.
 * - disposition: what happens to it, from its failure code ({@link DeadLetterTriage}).
 * - requeue: a {@link RequeueMessage} on `….<id>.requeue` that sends the original back to its
 *   worker, which runs it again at most once per dead letter (see RequeueMessage).
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type PubAck } from "@nats-io/jetstream";
import {
  type DeadLetter,
  DeadLetter as DeadLetterSchema,
  type Disposition,
  HEADERS,
  RequeueMessage,
  STREAMS,
  subjects,
  type Tenant,
  tenantFromSubject,
} from "@nexus/contracts";
import { entityMsgId } from "@nexus/core";
import { isJetStreamApiError } from "./errors.ts";
import { type JetStreamPublisher, type PublishOutcome, publishGuarded } from "./publish.ts";

/**
 * The triage of failure codes into dispositions. A code in no list is held. Automatic requeues
 * wait `requeueDelayMs` × 2^(generation − 1) and stop after `requeueMax` of them: the next
 * failure of the same original is an alarm.
 */
export interface DeadLetterTriage {
  requeue: ReadonlySet<string>;
  hold: ReadonlySet<string>;
  alarm: ReadonlySet<string>;
  /** Delay before the first automatic requeue runs, ms. */
  requeueDelayMs: number;
  /** Automatic requeues of one original at most. */
  requeueMax: number;
}

/** The triage when nothing is configured: every dead letter is held. */
export const HOLD_ALL: DeadLetterTriage = {
  requeue: new Set(),
  hold: new Set(),
  alarm: new Set(),
  requeueDelayMs: 60_000,
  requeueMax: 3,
};

/**
 * The disposition of a dead letter with `code` whose original was already requeued
 * automatically `generation` times.
 */
export function dispositionOf(t: DeadLetterTriage, code: string, generation: number): Disposition {
  if (t.alarm.has(code)) return "alarm";
  if (t.requeue.has(code)) return generation < t.requeueMax ? "requeue" : "alarm";
  return "hold";
}

/** Where a dead letter came from and where a requeue would go. */
export interface RequeueTarget {
  source: "cmd" | "approval";
  tenant: Tenant;
  /** Command id or ask id of the original. */
  id: string;
  /** The original (unwrapped from an earlier requeue): subject, body, stream sequence. */
  subject: string;
  payload: string;
  streamSeq: number;
  /** Automatic requeues of the original so far. */
  generation: number;
}

/** Why a dead letter cannot run again (`DEAD_LETTER_NOT_REQUEUEABLE`). */
export class NotRequeueable extends Error {
  override name = "NotRequeueable";
}

/**
 * Where a dead letter would be requeued, unwrapping an earlier requeue.
 * @throws {NotRequeueable} for a reused command id (the first command stands), an approved
 *   action (a failed execution is final: the ask is failed and its share withdrawn), a dead
 *   letter whose tenant or id cannot be read, or one that came from an unknown stream.
 */
export function requeueTarget(letter: DeadLetter): RequeueTarget {
  if (letter.reason === "idempotency_conflict")
    throw new NotRequeueable("the command id was reused with another body; the first command stands");
  let subject = letter.subject;
  let payload = letter.payload;
  let streamSeq = letter.stream_seq;
  let generation = 0;
  if (subject.endsWith(".requeue")) {
    const r = RequeueMessage.safeParse(safeJson(payload));
    if (!r.success) throw new NotRequeueable("the dead letter is a requeue that does not parse");
    subject = r.data.subject;
    payload = r.data.payload;
    streamSeq = r.data.stream_seq;
    generation = r.data.generation;
  }
  const parts = subject.split(".");
  const tenant = tenantFromSubject(subject);
  const id = parts[4];
  const source =
    letter.stream === STREAMS.commands || parts[1] === "cmd"
      ? "cmd"
      : letter.stream === STREAMS.approvals || parts[1] === "approval"
        ? "approval"
        : undefined;
  if (!tenant || !id || !source || !/^[A-Za-z0-9_:-]{1,128}$/.test(id))
    throw new NotRequeueable("the dead letter's tenant or id cannot be read from its subject");
  if (source === "cmd" && parts.length !== 5)
    throw new NotRequeueable("an approved action that failed is final (the ask is failed); send a new command");
  if (source === "approval" && parts.length !== 5)
    throw new NotRequeueable("the dead letter did not come from an ask register subject");
  return { source, tenant, id, subject, payload, streamSeq, generation };
}

/** Options of {@link publishRequeue}. */
export interface RequeueOptions {
  /** Sequence of the dead letter in NEXUS_DLQ. */
  dlqSeq: number;
  target: RequeueTarget;
  /** `auto` or the admin principal. */
  requestedBy: string;
  now: Date;
  /** Do not run before (automatic requeues). */
  notBefore?: Date;
  /** Automatic requeues of the original, this one included (0 for an operator's). */
  generation: number;
  correlationId: string;
  /** The trace the requeue belongs to (the admin's request, or the failed job's). */
  traceparent?: string;
  timeoutMs?: number;
  connected?: () => boolean;
}

/**
 * Publishes the {@link RequeueMessage} of a dead letter with `Nats-Msg-Id`
 * `<org>.<project>.dlq-<seq>:requeue`, so the same requeue published twice inside the duplicate
 * window is stored once (and a later one is skipped by the worker).
 * @returns the classified outcome (see `publishGuarded`): never throws for NATS failures.
 */
export function publishRequeue(js: JetStreamPublisher, o: RequeueOptions): Promise<PublishOutcome> {
  const t = o.target;
  const message: RequeueMessage = {
    v: 1,
    kind: "requeue",
    tenant: t.tenant,
    dlq_seq: o.dlqSeq,
    subject: t.subject,
    payload: t.payload,
    stream_seq: t.streamSeq,
    requested_by: o.requestedBy,
    requested_at: o.now.toISOString(),
    ...(o.notBefore ? { not_before: o.notBefore.toISOString() } : {}),
    generation: o.generation,
  };
  const msgId = entityMsgId(t.tenant, `dlq-${o.dlqSeq}`, "requeue");
  return publishGuarded(
    js,
    subjects.requeue(t.source, t.tenant, t.id),
    JSON.stringify(message),
    {
      tenant: t.tenant,
      msgId,
      correlationId: o.correlationId,
      ...(o.traceparent ? { traceparent: o.traceparent } : {}),
      extra: { [HEADERS.kind]: "requeue" },
    },
    { ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}), ...(o.connected ? { connected: o.connected } : {}) },
  );
}

/** A dead letter as stored, with its id (its NEXUS_DLQ sequence) and where it came from. */
export interface StoredDeadLetter {
  /** Sequence in NEXUS_DLQ. */
  seq: number;
  /** The dead letter's own subject (`nexus.dlq.<org>.<project>.<source>`). */
  dlqSubject: string;
  tenant: Tenant | null;
  source: "cmd" | "approval" | null;
  letter: DeadLetter;
}

function parseStored(seq: number, dlqSubject: string, body: string): StoredDeadLetter | null {
  const r = DeadLetterSchema.safeParse(safeJson(body));
  if (!r.success) return null;
  const source = dlqSubject.split(".")[4];
  return {
    seq,
    dlqSubject,
    tenant: tenantFromSubject(dlqSubject),
    source: source === "cmd" || source === "approval" ? source : null,
    letter: r.data,
  };
}

/**
 * Reads one dead letter by sequence.
 * @returns `null` when there is none at `seq` (or it is not a dead letter).
 * @throws nats.js errors when JetStream does not answer.
 */
export async function readDeadLetter(jsm: JetStreamManager, seq: number): Promise<StoredDeadLetter | null> {
  try {
    const m = await jsm.streams.getMessage(STREAMS.dlq, { seq });
    if (!m) return null;
    return parseStored(m.seq, m.subject, m.string());
  } catch (err) {
    if (isJetStreamApiError(err)) return null; // 10037 no message found
    throw err;
  }
}

/**
 * Removes a dead letter from NEXUS_DLQ.
 * @returns false when there was none at `seq`.
 * @throws nats.js errors when JetStream does not answer.
 */
export async function dropDeadLetter(jsm: JetStreamManager, seq: number): Promise<boolean> {
  try {
    return await jsm.streams.deleteMessage(STREAMS.dlq, seq, false);
  } catch (err) {
    if (isJetStreamApiError(err)) return false;
    throw err;
  }
}

/** A query of {@link listDeadLetters}. */
export interface DeadLetterQuery {
  tenant: Tenant;
  source?: "cmd" | "approval";
  code?: string;
  /** Only dead letters with a smaller sequence (the `next_before` of the previous page). */
  before?: number;
  /** Page size. */
  limit: number;
  /** Most dead letters read for one page; past it the page is cut short (default 10000). */
  scanMax?: number;
}

/** A page of {@link listDeadLetters}: newest first. */
export interface DeadLetterListPage {
  items: StoredDeadLetter[];
  /** Pass as `before` for the next (older) page; `null` at the end. */
  nextBefore: number | null;
}

/**
 * The dead letters of one tenant, newest first, filtered by source and code. JetStream reads
 * forward only, so this reads the tenant's dead-letter subjects from the start with an
 * ordered consumer (one subject filter per source) up to `before`, keeping the newest `limit`
 * that match: O(the tenant's dead letters), which retention (30 d, `STREAM_MAX_BYTES_DLQ`)
 * bounds.
 * @throws nats.js errors when JetStream does not answer.
 */
export async function listDeadLetters(js: JetStreamClient, q: DeadLetterQuery): Promise<DeadLetterListPage> {
  const sources = q.source ? [q.source] : (["cmd", "approval"] as const);
  const before = q.before ?? Number.POSITIVE_INFINITY;
  const scanMax = q.scanMax ?? 10_000;
  const matching: StoredDeadLetter[] = [];
  for (const source of sources) {
    const subject = subjects.dlq(q.tenant, source);
    const consumer = await js.consumers.get(STREAMS.dlq, {
      filter_subjects: subject,
      deliver_policy: DeliverPolicy.All,
    });
    try {
      const info = await consumer.info(true);
      let left = Math.min(info.num_pending, scanMax);
      while (left > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(left, 256), expires: 2000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          left--;
          if (m.seq >= before) {
            left = 0;
            break;
          }
          const s = parseStored(m.seq, m.subject, m.string());
          if (s && (!q.code || s.letter.code === q.code)) matching.push(s);
          if (m.info.pending === 0) left = 0;
          if (left === 0) break;
        }
        if (got === 0) break;
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
  }
  matching.sort((a, b) => b.seq - a.seq);
  const items = matching.slice(0, q.limit);
  const last = items.at(-1);
  return { items, nextBefore: matching.length > q.limit && last ? last.seq : null };
}

/** The PubAck of a dead letter's publish, for callers that need its sequence. */
export type DeadLetterAck = Pick<PubAck, "seq" | "duplicate">;

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** What the admin API needs of the dead-letter stream (a narrow interface; see {@link deadLetterStore}). */
export interface DeadLetterStore {
  list(q: DeadLetterQuery): Promise<DeadLetterListPage>;
  read(seq: number): Promise<StoredDeadLetter | null>;
  drop(seq: number): Promise<boolean>;
}

/** The {@link DeadLetterStore} of a NATS connection's JetStream. */
export function deadLetterStore(js: JetStreamClient, jsm: JetStreamManager): DeadLetterStore {
  return {
    list: (q) => listDeadLetters(js, q),
    read: (seq) => readDeadLetter(jsm, seq),
    drop: (seq) => dropDeadLetter(jsm, seq),
  };
}

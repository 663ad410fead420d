import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { CONSUMERS, STREAMS, subjects } from "@nexus/contracts";
import type { Logger } from "pino";
import { isNotFound } from "./errors.ts";

/** A stream's byte limit and what happens when it is reached. */
export interface StreamLimit {
  /** `max_bytes`; -1 = unlimited. */
  maxBytes: number;
  /** `old`: the oldest messages go; `new`: publishes are refused until there is room. */
  discard: "old" | "new";
}

/** The streams by their key in `STREAMS`. */
export type StreamKey = keyof typeof STREAMS;

/**
 * Where a work consumer that is missing while its stream holds messages starts when
 * provisioning creates it: `refuse` (throw {@link ConsumerMissing}), `new`, `all`, a stream
 * sequence or a time.
 */
export type MissingConsumerStart = "refuse" | "new" | "all" | { seq: number } | { time: string };

/** Topology settings (see BaseConfig for units and defaults). */
export interface TopologyOptions {
  streamEventKeep: number;
  replicas: number;
  storage: "file" | "memory";
  workMaxAgeSeconds: number;
  duplicateWindowMs: number;
  consumerAckWaitMs: number;
  /** Byte limits per stream; a stream not named here is unlimited. */
  streamLimits?: Partial<Record<StreamKey, StreamLimit>>;
  /** Default `refuse` (see {@link MissingConsumerStart}). */
  missingConsumerStart?: MissingConsumerStart;
}

/** Parses `PROVISION_CONSUMER_START` (`refuse`, `new`, `all`, `seq:<n>`, `time:<ISO 8601>`). */
export function parseConsumerStart(v: string): MissingConsumerStart {
  if (v === "refuse" || v === "new" || v === "all") return v;
  if (v.startsWith("seq:")) return { seq: Number(v.slice(4)) };
  if (v.startsWith("time:") && !Number.isNaN(Date.parse(v.slice(5))))
    return { time: new Date(v.slice(5)).toISOString() };
  throw new Error(`invalid consumer start ${JSON.stringify(v)}: refuse, new, all, seq:<n> or time:<ISO 8601>`);
}

const NS_PER_MS = 1_000_000;
const NS_PER_S = 1_000_000_000;

/**
 * The JetStream topology of docs/architecture.md: five streams and three durable pull consumers
 * (the two workers' and the archiver's on NEXUS_REPORTS).
 * Only 2.9-compatible fields are used (single `filter_subject`, no `subject_transform`):
 * `max_bytes` and `discard` exist since nats-server 2.2 and may be changed on an existing
 * stream (a lower limit drops the oldest messages, or refuses publishes with `discard: new`).
 *
 * NEXUS_COMMANDS and NEXUS_APPROVALS hold one subject per command and per ask: the gateway
 * writes them with an expected last subject sequence (create-if-absent, compare-and-set), so
 * their retention (`WORK_MAX_AGE_SECONDS`) is also how long a command id is remembered as an
 * idempotency key by the gateway (the command-worker's row remembers it for good).
 */
export function topology(o: TopologyOptions): {
  streams: Partial<StreamConfig>[];
  consumers: { stream: string; config: Partial<ConsumerConfig> }[];
} {
  const storage = o.storage === "memory" ? StorageType.Memory : StorageType.File;
  const common = { num_replicas: o.replicas, storage, duplicate_window: o.duplicateWindowMs * NS_PER_MS };
  const limit = (k: StreamKey): Partial<StreamConfig> => {
    const l = o.streamLimits?.[k];
    return {
      max_bytes: l ? l.maxBytes : -1,
      discard: l?.discard === "new" ? DiscardPolicy.New : DiscardPolicy.Old,
    };
  };
  return {
    streams: [
      {
        name: STREAMS.commands,
        subjects: [subjects.all.commands],
        retention: RetentionPolicy.Limits,
        max_age: o.workMaxAgeSeconds * NS_PER_S,
        ...limit("commands"),
        ...common,
      },
      {
        name: STREAMS.approvals,
        subjects: [subjects.all.approvals],
        retention: RetentionPolicy.Limits,
        max_age: o.workMaxAgeSeconds * NS_PER_S,
        ...limit("approvals"),
        ...common,
      },
      {
        name: STREAMS.reports,
        subjects: [subjects.all.reports],
        retention: RetentionPolicy.Limits,
        // Per-tenant retention: one subject per tenant, keep the newest N on each.
        max_msgs_per_subject: o.streamEventKeep,
        allow_direct: true,
        ...limit("reports"),
        // Per-subject retention needs the oldest to go: reports always discard old.
        discard: DiscardPolicy.Old,
        ...common,
      },
      {
        name: STREAMS.dlq,
        subjects: [subjects.all.dlq],
        retention: RetentionPolicy.Limits,
        max_age: 30 * 24 * 3600 * NS_PER_S,
        ...limit("dlq"),
        ...common,
      },
      {
        name: STREAMS.notify,
        subjects: [subjects.all.notify],
        retention: RetentionPolicy.Limits,
        max_age: o.workMaxAgeSeconds * NS_PER_S,
        ...limit("notify"),
        ...common,
      },
    ],
    consumers: [
      {
        stream: STREAMS.commands,
        config: {
          durable_name: CONSUMERS.commandWorker,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: o.consumerAckWaitMs * NS_PER_MS,
          max_deliver: -1,
          max_ack_pending: 1000,
        },
      },
      {
        stream: STREAMS.approvals,
        config: {
          durable_name: CONSUMERS.approvalWorker,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: o.consumerAckWaitMs * NS_PER_MS,
          max_deliver: -1,
          max_ack_pending: 1000,
        },
      },
      {
        // The archiver (services/archiver): every report, in stream order, into Postgres. It is
        // created here only; the archiver never creates it (a missing consumer is reported by
        // its /ready), so it is never silently re-created from the start of the stream.
        stream: STREAMS.reports,
        config: {
          durable_name: CONSUMERS.archiver,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: o.consumerAckWaitMs * NS_PER_MS,
          max_deliver: -1,
          // Batches of up to ARCHIVER_BATCH_SIZE (1000) per replica, pulled ahead while the
          // previous one commits.
          max_ack_pending: 20_000,
        },
      },
    ],
  };
}

/**
 * Thrown by {@link provisionTopology} when a work consumer is missing while its stream holds
 * messages and no start was chosen: re-creating it from the start would deliver every stored
 * message again (up to seven days of commands; poison messages dead-lettered a second time).
 */
export class ConsumerMissing extends Error {
  override name = "ConsumerMissing";
}

/**
 * Creates or updates every stream and consumer of {@link topology}. Idempotent: run it any
 * number of times (by `pnpm start`, the compose file, CI and tests).
 *
 * A consumer is created from the start of its stream only together with the stream (or while
 * the stream is empty). A consumer that is missing from a stream holding messages — deleted by
 * hand, lost with a node — is created where `missingConsumerStart` says; by default
 * provisioning refuses ({@link ConsumerMissing}) and says how to choose.
 * @throws {ConsumerMissing}; nats.js errors.
 */
export async function provisionTopology(jsm: JetStreamManager, o: TopologyOptions, logger?: Logger): Promise<void> {
  const t = topology(o);
  const created = new Set<string>();
  for (const s of t.streams) {
    try {
      const info = await jsm.streams.info(s.name!);
      await jsm.streams.update(s.name!, { ...info.config, ...s });
      logger?.debug({ stream: s.name }, "topology:stream-updated");
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.streams.add(s as StreamConfig);
      created.add(s.name!);
      logger?.info({ stream: s.name }, "topology:stream-created");
    }
  }
  for (const c of t.consumers) {
    try {
      await jsm.consumers.info(c.stream, c.config.durable_name!);
      await jsm.consumers.update(c.stream, c.config.durable_name!, {
        ack_wait: c.config.ack_wait,
        max_deliver: c.config.max_deliver,
        max_ack_pending: c.config.max_ack_pending,
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const state = created.has(c.stream) ? undefined : (await jsm.streams.info(c.stream)).state;
      const start: MissingConsumerStart = !state || state.messages === 0 ? "all" : (o.missingConsumerStart ?? "refuse");
      if (start === "refuse")
        throw new ConsumerMissing(
          `JetStream consumer ${c.stream}/${c.config.durable_name} is missing while the stream holds ${state?.messages} messages ` +
            `(sequences ${state?.first_seq}–${state?.last_seq}). Re-creating it from the start would run every stored message again. ` +
            "Choose where it starts with PROVISION_CONSUMER_START: new (only new messages), seq:<n> (from stream sequence n), " +
            "time:<ISO 8601> (from that time) or all (every stored message again), then provision once; see deploy/README.md.",
        );
      await jsm.consumers.add(c.stream, { ...c.config, ...deliverFrom(start) });
      logger?.warn(
        { stream: c.stream, consumer: c.config.durable_name, start, stream_messages: state?.messages ?? 0 },
        "topology:consumer-created",
      );
    }
  }
}

function deliverFrom(start: Exclude<MissingConsumerStart, "refuse">): Partial<ConsumerConfig> {
  if (start === "all") return { deliver_policy: DeliverPolicy.All };
  if (start === "new") return { deliver_policy: DeliverPolicy.New };
  if ("seq" in start) return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start.seq };
  return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.time };
}

/** Thrown by {@link checkTopology} when a stream or consumer is missing. */
export class TopologyMissing extends Error {
  override name = "TopologyMissing";
}

/**
 * Verifies that the streams (and, when given, consumers) exist, so services fail fast with a
 * clear message instead of waiting forever.
 * @throws {TopologyMissing} naming what is missing and how to create it.
 */
export async function checkTopology(
  jsm: JetStreamManager,
  need: { streams: string[]; consumers?: { stream: string; name: string }[] },
): Promise<void> {
  for (const s of need.streams) {
    try {
      await jsm.streams.info(s);
    } catch (err) {
      if (isNotFound(err)) throw new TopologyMissing(`JetStream stream ${s} is missing: run \`pnpm provision\` first`);
      throw err;
    }
  }
  for (const c of need.consumers ?? []) {
    try {
      await jsm.consumers.info(c.stream, c.name);
    } catch (err) {
      if (isNotFound(err))
        throw new TopologyMissing(`JetStream consumer ${c.stream}/${c.name} is missing: run \`pnpm provision\` first`);
      throw err;
    }
  }
}

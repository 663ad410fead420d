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

/** Topology settings (see BaseConfig for units and defaults). */
export interface TopologyOptions {
  streamEventKeep: number;
  replicas: number;
  storage: "file" | "memory";
  workMaxAgeSeconds: number;
  duplicateWindowMs: number;
  consumerAckWaitMs: number;
}

const NS_PER_MS = 1_000_000;
const NS_PER_S = 1_000_000_000;

/**
 * The JetStream topology of ARCHITECTURE.md: five streams and three durable pull consumers
 * (the two workers' and the archiver's on NEXUS_REPORTS).
 * Only 2.9-compatible fields are used (single `filter_subject`, no `subject_transform`).
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
  return {
    streams: [
      {
        name: STREAMS.commands,
        subjects: [subjects.all.commands],
        retention: RetentionPolicy.Limits,
        max_age: o.workMaxAgeSeconds * NS_PER_S,
        ...common,
      },
      {
        name: STREAMS.approvals,
        subjects: [subjects.all.approvals],
        retention: RetentionPolicy.Limits,
        max_age: o.workMaxAgeSeconds * NS_PER_S,
        ...common,
      },
      {
        name: STREAMS.reports,
        subjects: [subjects.all.reports],
        retention: RetentionPolicy.Limits,
        // Per-tenant retention: one subject per tenant, keep the newest N on each.
        max_msgs_per_subject: o.streamEventKeep,
        discard: DiscardPolicy.Old,
        allow_direct: true,
        ...common,
      },
      {
        name: STREAMS.dlq,
        subjects: [subjects.all.dlq],
        retention: RetentionPolicy.Limits,
        max_age: 30 * 24 * 3600 * NS_PER_S,
        ...common,
      },
      {
        name: STREAMS.notify,
        subjects: [subjects.all.notify],
        retention: RetentionPolicy.Limits,
        max_age: o.workMaxAgeSeconds * NS_PER_S,
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
 * Creates or updates every stream and consumer of {@link topology}. Idempotent: run it any
 * number of times (by `pnpm start`, the compose file, CI and tests).
 */
export async function provisionTopology(jsm: JetStreamManager, o: TopologyOptions, logger?: Logger): Promise<void> {
  const t = topology(o);
  for (const s of t.streams) {
    try {
      const info = await jsm.streams.info(s.name!);
      await jsm.streams.update(s.name!, { ...info.config, ...s });
      logger?.debug({ stream: s.name }, "topology:stream-updated");
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.streams.add(s as StreamConfig);
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
      await jsm.consumers.add(c.stream, c.config);
      logger?.info({ stream: c.stream, consumer: c.config.durable_name }, "topology:consumer-created");
    }
  }
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

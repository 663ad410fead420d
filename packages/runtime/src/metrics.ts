/**
 * Prometheus metrics of the dependencies every service shares: JetStream publishes (PubAck
 * latency), Postgres queries and the pool, and stream usage against its byte limit. One prefix
 * (`nexus_`), base units in the names (`_seconds`, `_bytes`), no tenant labels.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { type Database, isPgUnavailable, poolStats } from "@nexus/core";
import type { PublishObservation } from "@nexus/messaging";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { Gauge, Histogram, type Registry } from "prom-client";

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * `nexus_nats_publish_duration_seconds{kind,outcome}`: time from a JetStream publish to its
 * PubAck (or failure), by subject kind (`nexus.cmd`, `nexus.report`, …) and outcome (ok, error).
 * @returns the observer to give `instrumentJetStream`.
 */
export function publishMetrics(registry: Registry): (o: PublishObservation) => void {
  const h = new Histogram({
    name: "nexus_nats_publish_duration_seconds",
    help: "JetStream publish to PubAck latency, by subject kind and outcome (ok, error)",
    labelNames: ["kind", "outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  return (o) => h.observe({ kind: o.kind, outcome: o.outcome }, o.seconds);
}

/**
 * `nexus_db_query_duration_seconds{outcome}`: Postgres query latency, by outcome (`ok`,
 * `error`, `unavailable` — a connection or pool-acquire failure, a statement or read timeout).
 * @returns the observer to give `createDb` as `onQuery`.
 */
export function dbQueryMetrics(registry: Registry): (seconds: number, err: unknown) => void {
  const h = new Histogram({
    name: "nexus_db_query_duration_seconds",
    help: "Postgres query latency, by outcome (ok, error, unavailable)",
    labelNames: ["outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  return (seconds, err) =>
    h.observe({ outcome: err === undefined ? "ok" : isPgUnavailable(err) ? "unavailable" : "error" }, seconds);
}

/**
 * `nexus_db_pool_connections{state}` (`total`, `idle`, `waiting` — queries waiting for a
 * connection) and `nexus_db_pool_max` (`PG_POOL_MAX`), read at scrape time.
 */
export function dbPoolMetrics(registry: Registry, db: Kysely<Database>, max: number): void {
  new Gauge({
    name: "nexus_db_pool_connections",
    help: "Postgres pool: open connections (total), idle ones, and queries waiting for one",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const s = poolStats(db);
      if (!s) return;
      this.set({ state: "total" }, s.total);
      this.set({ state: "idle" }, s.idle);
      this.set({ state: "waiting" }, s.waiting);
    },
  });
  new Gauge({
    name: "nexus_db_pool_max",
    help: "Postgres connections this process may hold (PG_POOL_MAX)",
    registers: [registry],
    collect() {
      this.set(max);
    },
  });
}

/** A running stream-usage poller. */
export interface StreamUsageMeter {
  /** One read of every stream (also run every `intervalMs`). */
  poll(): Promise<void>;
  stop(): void;
}

/**
 * `nexus_stream_bytes{stream}`, `nexus_stream_messages{stream}` and
 * `nexus_stream_max_bytes{stream}` (-1 = unlimited), from JetStream's stream info every
 * `intervalMs`: the JetStreamStreamNearFull alert compares the first with the last.
 */
export function streamUsageMetrics(
  registry: Registry,
  jsm: Pick<JetStreamManager, "streams">,
  streams: readonly string[],
  o: { intervalMs: number; logger?: Logger },
): StreamUsageMeter {
  const bytes = new Gauge({
    name: "nexus_stream_bytes",
    help: "Bytes stored in the JetStream stream",
    labelNames: ["stream"],
    registers: [registry],
  });
  const messages = new Gauge({
    name: "nexus_stream_messages",
    help: "Messages stored in the JetStream stream",
    labelNames: ["stream"],
    registers: [registry],
  });
  const maxBytes = new Gauge({
    name: "nexus_stream_max_bytes",
    help: "Byte limit of the JetStream stream (max_bytes; -1 = unlimited)",
    labelNames: ["stream"],
    registers: [registry],
  });
  const poll = async () => {
    for (const stream of streams) {
      try {
        const info = await jsm.streams.info(stream);
        bytes.set({ stream }, info.state.bytes);
        messages.set({ stream }, info.state.messages);
        maxBytes.set({ stream }, info.config.max_bytes ?? -1);
      } catch (err) {
        o.logger?.debug({ err, stream }, "metrics:stream-info-failed");
      }
    }
  };
  const timer = setInterval(() => void poll(), o.intervalMs);
  timer.unref();
  void poll();
  return { poll, stop: () => clearInterval(timer) };
}

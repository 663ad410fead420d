import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createDb, type Database } from "@nexus/core";
import { createMetrics, type ReadinessCheck } from "@nexus/http";
import {
  checkTopology,
  connectNats,
  instrumentJetStream,
  isNatsConnected,
  type NatsCredentials,
  parseConsumerStart,
  provisionTopology,
  type TopologyOptions,
} from "@nexus/messaging";
import { type Kysely, sql } from "kysely";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { BaseConfig } from "./config.ts";
import { createLogger } from "./logger.ts";
import { dbPoolMetrics, dbQueryMetrics, publishMetrics } from "./metrics.ts";

/** The JetStream topology settings named by a service's configuration. */
export function topologyOptions(config: BaseConfig): TopologyOptions {
  return {
    streamEventKeep: config.STREAM_EVENT_KEEP,
    replicas: config.STREAM_REPLICAS,
    storage: config.STREAM_STORAGE,
    workMaxAgeSeconds: config.WORK_MAX_AGE_SECONDS,
    duplicateWindowMs: config.DUPLICATE_WINDOW_MS,
    consumerAckWaitMs: config.CONSUMER_ACK_WAIT_MS,
    streamLimits: {
      commands: { maxBytes: config.STREAM_MAX_BYTES_COMMANDS, discard: config.STREAM_DISCARD_COMMANDS },
      approvals: { maxBytes: config.STREAM_MAX_BYTES_APPROVALS, discard: config.STREAM_DISCARD_APPROVALS },
      reports: { maxBytes: config.STREAM_MAX_BYTES_REPORTS, discard: "old" },
      dlq: { maxBytes: config.STREAM_MAX_BYTES_DLQ, discard: config.STREAM_DISCARD_DLQ },
      notify: { maxBytes: config.STREAM_MAX_BYTES_NOTIFY, discard: config.STREAM_DISCARD_NOTIFY },
    },
    missingConsumerStart: parseConsumerStart(config.PROVISION_CONSUMER_START),
  };
}

/** The NATS credentials a service's configuration names. */
export function natsAuth(config: BaseConfig): NatsCredentials {
  const tls =
    config.NATS_TLS_CA_FILE || config.NATS_TLS_CERT_FILE
      ? {
          ...(config.NATS_TLS_CA_FILE ? { caFile: config.NATS_TLS_CA_FILE } : {}),
          ...(config.NATS_TLS_CERT_FILE ? { certFile: config.NATS_TLS_CERT_FILE } : {}),
          ...(config.NATS_TLS_KEY_FILE ? { keyFile: config.NATS_TLS_KEY_FILE } : {}),
        }
      : undefined;
  return {
    ...(config.NATS_USER ? { user: config.NATS_USER } : {}),
    ...(config.NATS_PASSWORD ? { password: config.NATS_PASSWORD } : {}),
    ...(config.NATS_TOKEN ? { token: config.NATS_TOKEN } : {}),
    ...(config.NATS_CREDS ? { credsFile: config.NATS_CREDS } : {}),
    ...(tls ? { tls } : {}),
  };
}

/** What every service's `main.ts` starts with. */
export interface ServiceRuntime {
  logger: Logger;
  nc: NatsConnection;
  jsm: JetStreamManager;
  js: JetStreamClient;
  db: Kysely<Database>;
  metrics: Registry;
}

/** The pool options a service's configuration names. */
export function dbOptions(
  config: BaseConfig,
  applicationName: string,
  logger?: Logger,
  onQuery?: (seconds: number, err: unknown) => void,
) {
  return {
    url: config.DATABASE_URL,
    applicationName,
    max: config.PG_POOL_MAX,
    acquireTimeoutMs: config.PG_ACQUIRE_TIMEOUT_MS,
    statementTimeoutMs: config.PG_STATEMENT_TIMEOUT_MS,
    onError: (err: Error) => logger?.warn({ err }, "postgres:connection-error"),
    ...(onQuery ? { onQuery } : {}),
  };
}

/**
 * The shared start of a service: logger, NATS connection, topology (provisioned when
 * `PROVISION_ON_START`, then checked so the service fails fast with a clear message when a
 * stream or consumer is missing), Postgres pool and metrics registry. Every JetStream publish
 * of `js` is traced and timed (`nexus_nats_publish_duration_seconds`), every query of `db`
 * timed (`nexus_db_query_duration_seconds`, `nexus_db_pool_connections`).
 * @throws {TopologyMissing} naming what is missing; nats.js errors when NATS does not answer.
 */
export async function startRuntime(
  service: string,
  config: BaseConfig,
  need: Parameters<typeof checkTopology>[1],
): Promise<ServiceRuntime> {
  const logger = createLogger({ service, level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
  const nc = await connectNats({ url: config.NATS_URL, name: service, logger, auth: natsAuth(config) });
  const jsm = await jetstreamManager(nc);
  if (config.PROVISION_ON_START) await provisionTopology(jsm, topologyOptions(config), logger);
  await checkTopology(jsm, need);
  const metrics = createMetrics(service);
  const db = createDb(dbOptions(config, service, logger, dbQueryMetrics(metrics)));
  dbPoolMetrics(metrics, db, config.PG_POOL_MAX);
  return {
    logger,
    nc,
    jsm,
    js: instrumentJetStream(jetstream(nc), publishMetrics(metrics)),
    db,
    metrics,
  };
}

/**
 * The `/ready` checks of a process that works a durable consumer (the workers, the archiver):
 * `nats` (connected now), `postgres` (answers `select 1`) and `consumer` (`consumerOk()`: the
 * consumer exists and delivers, see `Worker.health`). For `addHealthRoutes`.
 */
export function consumerReadyChecks(o: {
  nc: NatsConnection;
  db: Kysely<Database>;
  consumerOk: () => boolean;
}): Record<"nats" | "postgres" | "consumer", ReadinessCheck> {
  return {
    nats: () => isNatsConnected(o.nc),
    postgres: async () => {
      await sql`select 1`.execute(o.db);
      return true;
    },
    consumer: o.consumerOk,
  };
}

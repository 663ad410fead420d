import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { BaseConfig } from "./config.ts";
import { createDb } from "./db/database.ts";
import type { Database } from "./db/schema.ts";
import { createMetrics } from "./http/service.ts";
import { createLogger } from "./logger.ts";
import { connectNats } from "./nats/connect.ts";
import { checkTopology, provisionTopology, type TopologyOptions } from "./nats/topology.ts";

/** The JetStream topology settings named by a service's configuration. */
export function topologyOptions(config: BaseConfig): TopologyOptions {
  return {
    streamEventKeep: config.STREAM_EVENT_KEEP,
    replicas: config.STREAM_REPLICAS,
    storage: config.STREAM_STORAGE,
    workMaxAgeSeconds: config.WORK_MAX_AGE_SECONDS,
    duplicateWindowMs: config.DUPLICATE_WINDOW_MS,
    consumerAckWaitMs: config.CONSUMER_ACK_WAIT_MS,
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

/**
 * The shared start of a service: logger, NATS connection, topology (provisioned when
 * `PROVISION_ON_START`, then checked so the service fails fast with a clear message when a
 * stream or consumer is missing), Postgres pool and metrics registry.
 * @throws {TopologyMissing} naming what is missing; nats.js errors when NATS does not answer.
 */
export async function startRuntime(
  service: string,
  config: BaseConfig,
  need: Parameters<typeof checkTopology>[1],
): Promise<ServiceRuntime> {
  const logger = createLogger({ service, level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
  const nc = await connectNats({ url: config.NATS_URL, name: service, logger });
  const jsm = await jetstreamManager(nc);
  if (config.PROVISION_ON_START) await provisionTopology(jsm, topologyOptions(config), logger);
  await checkTopology(jsm, need);
  return {
    logger,
    nc,
    jsm,
    js: jetstream(nc),
    db: createDb({ url: config.DATABASE_URL, applicationName: service }),
    metrics: createMetrics(service),
  };
}

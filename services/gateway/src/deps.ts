import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Database, ReportPublisher } from "@nexus/platform";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { GatewayConfig } from "./config.ts";

/** What the gateway's routes depend on: an explicit bag, no singletons. */
export interface GatewayDeps {
  config: GatewayConfig;
  db: Kysely<Database>;
  nc: NatsConnection;
  js: JetStreamClient;
  reports: ReportPublisher;
  logger: Logger;
  metrics: Registry;
  /** The clock; tests may pass a fixed one. */
  now: () => Date;
}

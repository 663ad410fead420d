import { jetstreamManager } from "@nats-io/jetstream";
import { createDb, migrateToLatest } from "@nexus/core";
import { connectNats, provisionTopology } from "@nexus/messaging";
import type { Logger } from "pino";
import { BaseConfig, parseConfig } from "./config.ts";
import { natsAuth, topologyOptions } from "./service.ts";

/**
 * Provisioning, idempotent: runs every pending Postgres migration (kysely's Migrator, under an
 * advisory lock) and creates or updates the JetStream streams and consumers, from `env`
 * (`DATABASE_URL`, `NATS_URL` and the topology settings of {@link BaseConfig}).
 * Run by `pnpm provision`, `pnpm start`, the compose file and the Kubernetes job.
 * @throws {ConfigError} for invalid settings; the first migration or JetStream error.
 */
export async function provisionAll(env: Record<string, string | undefined>, logger: Logger): Promise<void> {
  const config = parseConfig(BaseConfig, env);
  const db = createDb({ url: config.DATABASE_URL, max: 1, applicationName: "provision", statementTimeoutMs: 0 });
  try {
    const applied = await migrateToLatest(db);
    logger.info({ applied }, "provision:migrations");
  } finally {
    await db.destroy();
  }
  const nc = await connectNats({ url: config.NATS_URL, name: "provision", logger, auth: natsAuth(config) });
  try {
    await provisionTopology(await jetstreamManager(nc), topologyOptions(config), logger);
    logger.info("provision:topology");
  } finally {
    await nc.close();
  }
}

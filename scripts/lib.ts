import { jetstreamManager } from "@nats-io/jetstream";
import { createDb, migrateToLatest } from "@nexus/core";
import { connectNats, provisionTopology } from "@nexus/messaging";
import { BaseConfig, createLogger, parseConfig, topologyOptions } from "@nexus/runtime";
import type { Logger } from "pino";

/** Runs migrations and provisions the JetStream topology from `env` (idempotent). */
export async function provisionAll(env: Record<string, string | undefined>, logger: Logger): Promise<void> {
  const config = parseConfig(BaseConfig, env);
  const db = createDb({ url: config.DATABASE_URL, max: 1, applicationName: "provision" });
  try {
    const applied = await migrateToLatest(db);
    logger.info({ applied }, "provision:migrations");
  } finally {
    await db.destroy();
  }
  const nc = await connectNats({ url: config.NATS_URL, name: "provision", logger });
  try {
    await provisionTopology(await jetstreamManager(nc), topologyOptions(config), logger);
    logger.info("provision:topology");
  } finally {
    await nc.close();
  }
}

export { createLogger };

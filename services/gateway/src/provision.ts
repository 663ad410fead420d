/**
 * `node services/gateway/src/provision.ts`: migrations and JetStream topology from the
 * environment, then exit (0 on success). The provisioning step of the gateway's image (compose
 * `provision`, the Kubernetes job); `pnpm provision` runs the same function.
 */
import { createLogger, provisionAll } from "@nexus/runtime";

const logger = createLogger({ service: "provision", level: process.env.LOG_LEVEL ?? "info" });
try {
  await provisionAll(process.env, logger);
} catch (err) {
  logger.error({ err }, "provision failed");
  process.exit(1);
}

/**
 * `pnpm provision`: migrates Postgres (DATABASE_URL) and creates or updates the JetStream
 * streams and consumers (NATS_URL). Idempotent; the compose file and CI run it too.
 */
import { createLogger, provisionAll } from "./lib.ts";

const logger = createLogger({ service: "provision", level: "info" });
await provisionAll(process.env, logger);

/**
 * `node packages/runtime/src/bin/wait-provisioned.ts [--stream NAME]… [--consumer STREAM/NAME]…`:
 * waits until provisioning has run for this version — every migration this code knows is
 * applied and the named JetStream streams and consumers exist — then exits 0; exits 1 with a
 * message naming what is missing after `WAIT_PROVISIONED_TIMEOUT_MS` (default 600000).
 *
 * The Kubernetes init container of every service (deploy/k8s): a pod of a new version starts
 * only after the gateway's `provision` init container migrated and provisioned, instead of
 * crash-looping with stack traces meanwhile. Read-only, with the service's own credentials
 * (`DATABASE_URL`, `NATS_USER`/`NATS_PASSWORD`, …): it never creates anything.
 */
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { createDb, pendingMigrations } from "@nexus/core";
import { checkTopology, connectNats } from "@nexus/messaging";
import { parseConfig, WaitProvisionedConfig } from "../config.ts";
import { createLogger } from "../logger.ts";
import { natsAuth } from "../service.ts";

const config = parseConfig(WaitProvisionedConfig, process.env);
const { values } = parseArgs({
  options: { stream: { type: "string", multiple: true }, consumer: { type: "string", multiple: true } },
});
const streams = values.stream ?? [];
const consumers = (values.consumer ?? []).map((c) => {
  const [stream, name] = c.split("/");
  if (!stream || !name) throw new Error(`--consumer ${c}: expected STREAM/NAME`);
  return { stream, name };
});
const logger = createLogger({ service: "wait-provisioned", level: config.LOG_LEVEL });
const deadline = Date.now() + config.WAIT_PROVISIONED_TIMEOUT_MS;

/** What is still missing, or `null` when everything is there. */
async function missing(): Promise<string | null> {
  const db = createDb({
    url: config.DATABASE_URL,
    max: 1,
    applicationName: "wait-provisioned",
    acquireTimeoutMs: 5000,
  });
  try {
    const pending = await pendingMigrations(db);
    if (pending.length) return `migrations not applied yet: ${pending.join(", ")}`;
  } finally {
    await db.destroy();
  }
  const nc = await connectNats({ url: config.NATS_URL, name: "wait-provisioned", logger, auth: natsAuth(config) });
  try {
    await checkTopology(await jetstreamManager(nc), { streams, consumers });
    return null;
  } finally {
    await nc.close();
  }
}

let last = "";
for (;;) {
  const why = await missing().catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
  if (why === null) {
    logger.info({ streams, consumers }, "provisioned");
    process.exit(0);
  }
  if (why !== last) logger.info({ why }, "waiting for provisioning");
  last = why;
  if (Date.now() > deadline) {
    logger.error({ why }, "provisioning did not happen in time");
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 2000));
}

/**
 * `pnpm openapi`: writes `docs/openapi.json`, the OpenAPI 3.1 document the gateway serves at
 * `/docs/json`, generated from the route definitions and the zod contracts. The gateway is built
 * with inert dependencies (nothing connects: no request is served), so the script needs neither
 * NATS nor Postgres. `test/docs/openapi.test.ts` checks that the committed file equals what a
 * real gateway serves. `--check` compares instead of writing (exit 1 on a difference).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createDb } from "@nexus/core";
import { buildGateway } from "@nexus/gateway";
import { GatewayConfig } from "@nexus/gateway/config";
import { createMetrics } from "@nexus/http";
import type { JetStreamPublisher } from "@nexus/messaging";
import { parseConfig } from "@nexus/runtime";
import { pino } from "pino";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** Where the committed copy lives. */
export const OPENAPI_FILE = path.join(ROOT, "docs", "openapi.json");

/** The document as the gateway serves it, rendered without any connection. */
export async function renderOpenApi(): Promise<Record<string, unknown>> {
  const config = parseConfig(GatewayConfig, { OUTBOX_POLL_MS: String(24 * 3600_000) });
  const refuse = () => Promise.reject(new Error("inert: the OpenAPI renderer serves no request"));
  const db = createDb({ url: "postgres://inert@127.0.0.1:1/inert" });
  const app = await buildGateway({
    config,
    db,
    js: { publish: refuse } as unknown as JetStreamPublisher,
    readLast: refuse,
    purge: refuse,
    deadLetters: { list: refuse, read: refuse, drop: refuse },
    natsConnected: () => false,
    natsReady: async () => false,
    logger: pino({ level: "silent" }),
    metrics: createMetrics("openapi"),
    now: () => new Date(),
  });
  try {
    await app.ready();
    return (await app.inject({ url: "/docs/json" })).json();
  } finally {
    await app.close();
    await db.destroy();
  }
}

/** The committed file's exact text for a document (2-space JSON, final newline). */
export function openApiText(doc: unknown): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = openApiText(await renderOpenApi());
  if (process.argv.includes("--check")) {
    const committed = fs.existsSync(OPENAPI_FILE) ? fs.readFileSync(OPENAPI_FILE, "utf8") : "";
    if (committed !== text) {
      console.error("docs/openapi.json is out of date: run `pnpm openapi`");
      process.exit(1);
    }
    console.log("docs/openapi.json is up to date");
  } else {
    fs.writeFileSync(OPENAPI_FILE, text);
    console.log(`wrote ${path.relative(ROOT, OPENAPI_FILE)}`);
  }
}

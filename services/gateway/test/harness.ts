import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createMetrics } from "@nexus/http";
import {
  connectNats,
  deadLetterStore,
  isNatsConnected,
  type JetStreamPublisher,
  type LastMessageReader,
  lastMessageReader,
  streamPurger,
} from "@nexus/messaging";
import { parseConfig } from "@nexus/runtime";
import type { TestDatabase, TestNats } from "@nexus/testkit";
import { pino } from "pino";
import { buildGateway } from "../src/app.ts";
import { GatewayConfig } from "../src/config.ts";
import type { FaultHook, GatewayDeps } from "../src/deps.ts";

/** An in-process gateway on real NATS and Postgres, with hooks for fault injection. */
export interface GatewayHarness {
  app: Awaited<ReturnType<typeof buildGateway>>;
  deps: GatewayDeps;
  nc: NatsConnection;
  close(): Promise<void>;
}

/**
 * Builds the gateway in-process (no listening socket: use `app.inject`).
 * @param o.wrap wraps the JetStream publisher (refuse a publish, lose a PubAck);
 * @param o.faults runs at each write-path step; @param o.env overrides configuration.
 */
export async function startGateway(o: {
  nats: TestNats;
  db: TestDatabase;
  env?: Record<string, string>;
  wrap?: (js: JetStreamPublisher) => JetStreamPublisher;
  wrapReader?: (r: LastMessageReader) => LastMessageReader;
  faults?: FaultHook;
}): Promise<GatewayHarness> {
  const logger = pino({ level: "silent" });
  const nc = await connectNats({ url: o.nats.url, name: "gateway-test", logger });
  const js = jetstream(nc);
  const config = parseConfig(GatewayConfig, {
    NATS_URL: o.nats.url,
    DATABASE_URL: o.db.url,
    RATE_LIMIT_PER_MINUTE: "100000",
    PUBLISH_TIMEOUT_MS: "2000",
    ...o.env,
  });
  const jsm = await jetstreamManager(nc);
  const reader = lastMessageReader(jsm);
  const deps: GatewayDeps = {
    config,
    db: o.db.db,
    js: o.wrap ? o.wrap(js) : js,
    readLast: o.wrapReader ? o.wrapReader(reader) : reader,
    purge: streamPurger(jsm),
    deadLetters: deadLetterStore(js, jsm),
    natsConnected: () => isNatsConnected(nc),
    natsReady: async () => {
      await nc.flush();
      return true;
    },
    logger,
    metrics: createMetrics("gateway-test"),
    now: () => new Date(),
    ...(o.faults ? { faults: o.faults } : {}),
  };
  const app = await buildGateway(deps);
  await app.ready();
  return {
    app,
    deps,
    nc,
    async close() {
      await app.close();
      await nc.close();
    },
  };
}

import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";

const connected = new WeakMap<NatsConnection, boolean>();

/**
 * True while the connection is up. Publishers check it first: while disconnected, nats.js
 * buffers publishes and flushes them after reconnecting, so a request that timed out (and was
 * answered 503) could still be stored later. Failing fast keeps "503 = nothing accepted".
 */
export function isNatsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && connected.get(nc) !== false;
}

/** Options of {@link connectNats}. */
export interface ConnectOptions {
  /** Comma-separated server URLs. */
  url: string;
  /** Connection name shown in server monitoring (`gateway`, `command-worker`, …). */
  name: string;
  logger: Logger;
  /** Give up after this many milliseconds when the first connect fails (default 5000). */
  timeoutMs?: number;
}

/**
 * Connects to NATS with the settings every service uses: `noAsyncTraces` (nearly doubles
 * publish throughput, ARCHITECTURE.md), unlimited reconnects, status changes logged.
 * @throws the nats.js connection error when no server answers within `timeoutMs`.
 */
export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.url.split(",").map((s) => s.trim()),
    name: opts.name,
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: opts.timeoutMs ?? 5000,
  });
  connected.set(nc, true);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") connected.set(nc, false);
      if (s.type === "reconnect") connected.set(nc, true);
      if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") {
        opts.logger.warn({ nats_status: s.type, server: "server" in s ? s.server : undefined }, `nats:${s.type}`);
      }
    }
  })().catch(() => {});
  return nc;
}

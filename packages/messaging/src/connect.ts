import fs from "node:fs";
import { type ConnectionOptions, connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { splitList } from "@nexus/contracts";
import type { Logger } from "pino";
import { inboxPrefix } from "./permissions.ts";

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
  /** The service's NATS credentials (see {@link NatsCredentials}); none: anonymous. */
  auth?: NatsCredentials;
}

/**
 * How a service authenticates to NATS (one of): user + password, a token, or a `.creds` file
 * (NATS decentralised auth: a user JWT and its nkey seed). TLS files verify the server and,
 * with a certificate and key, authenticate the client too. User and password may also come
 * in the URL (`nats://user:pass@host:4222`).
 */
export interface NatsCredentials {
  user?: string;
  password?: string;
  token?: string;
  credsFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** Inbox prefix for replies (default `_INBOX_<user>` when a user is known, else nats.js's `_INBOX`). */
  inboxPrefix?: string;
}

/**
 * Connects to NATS with the settings every service uses: `noAsyncTraces` (nearly doubles
 * publish throughput, docs/architecture.md), `coalesceWrites` (the commands of one event-loop
 * turn leave in one socket write: patches/README.md), unlimited reconnects, status changes
 * logged.
 * @throws the nats.js connection error when no server answers within `timeoutMs`.
 */
export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  const a = opts.auth ?? {};
  let user = a.user;
  let pass = a.password;
  const servers = splitList(opts.url).map((s) => {
    // nats.js does not read credentials from the URL: take them out and pass them explicitly.
    try {
      const u = new URL(s);
      if (u.username) {
        user ??= decodeURIComponent(u.username);
        pass ??= decodeURIComponent(u.password);
        u.username = "";
        u.password = "";
        return u.toString().replace(/\/$/, "");
      }
    } catch {}
    return s;
  });
  const prefix = a.inboxPrefix ?? (user ? inboxPrefix(user) : undefined);
  const options: ConnectionOptions = {
    servers,
    name: opts.name,
    noAsyncTraces: true,
    coalesceWrites: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: opts.timeoutMs ?? 5000,
    ...(user ? { user, pass: pass ?? "" } : {}),
    ...(a.token ? { token: a.token } : {}),
    ...(a.credsFile ? { authenticator: credsAuthenticator(fs.readFileSync(a.credsFile)) } : {}),
    ...(a.tls ? { tls: { ...a.tls } } : {}),
    ...(prefix ? { inboxPrefix: prefix } : {}),
  };
  const nc = await connect(options);
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

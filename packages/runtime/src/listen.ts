import type { AddressInfo } from "node:net";

/**
 * The message a service sends its parent process, over Node's IPC channel, once its HTTP
 * server listens: `{ type: "nexus:listening", port }`. A launcher that spawned the service with
 * an `"ipc"` stdio entry (the test stack, `packages/testkit/src/stack.ts`) learns from it which
 * port the service bound — with `PORT=0`, one the kernel chose — and that it was this process
 * that bound it. Without an IPC channel (production, containers) nothing is sent.
 */
export interface ListeningMessage {
  type: "nexus:listening";
  /** The TCP port the server listens on. */
  port: number;
}

/** The HTTP server of a service, as {@link listen} needs it (a Fastify instance). */
export interface Listenable {
  listen(o: { host: string; port: number }): Promise<unknown>;
  server: { address(): AddressInfo | string | null };
}

/**
 * Starts a service's HTTP server on `HOST`:`PORT` and returns the port it listens on (the
 * kernel's choice when `PORT` is 0). When the process has an IPC channel to its parent, sends
 * the parent a {@link ListeningMessage} and then unreferences the channel, so that it never
 * keeps the process alive.
 * @throws whatever `listen` throws (e.g. `EADDRINUSE`); nothing is sent then.
 */
export async function listen(app: Listenable, config: { HOST: string; PORT: number }): Promise<number> {
  await app.listen({ host: config.HOST, port: config.PORT });
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.PORT;
  if (process.send && process.connected) {
    const message: ListeningMessage = { type: "nexus:listening", port };
    process.send(message);
    process.channel?.unref();
  }
  return port;
}

/**
 * A small HTTP load balancer in front of the gateway instances, as an ingress or a Kubernetes
 * Service would be: round-robin over the backends in rotation; a request whose connection is
 * refused (nothing was sent) goes to the next backend; when none accepts, `503` with the
 * standard error body; a backend that fails after the request was sent gives `502` (the request
 * may have taken effect). Responses, SSE included, are streamed through unbuffered.
 */
import http from "node:http";
import type net from "node:net";

/** A running balancer. */
export interface Balancer {
  url: string;
  /** The backends in rotation (base URLs), replaced atomically. */
  setBackends(urls: string[]): void;
  backends(): string[];
  /** Requests answered by the balancer itself, by status (no backend: 503; backend failed: 502). */
  own: Record<number, number>;
  close(): Promise<void>;
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message, recoverable: true } });
}

/** Starts a {@link Balancer} on a free port of 127.0.0.1. */
export async function startBalancer(initial: string[]): Promise<Balancer> {
  let backends = [...initial];
  let next = 0;
  const own: Record<number, number> = {};
  const sockets = new Set<net.Socket>();

  const answer = (res: http.ServerResponse, status: number, code: string, message: string) => {
    own[status] = (own[status] ?? 0) + 1;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { "content-type": "application/json", connection: "close" });
    res.end(errorBody(code, message));
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const order = backends.length ? backends.map((_, i) => backends[(next + i) % backends.length] as string) : [];
      next = (next + 1) % Math.max(1, backends.length);
      const attempt = (i: number) => {
        const target = order[i];
        if (!target) {
          answer(res, 503, "DEPENDENCY_UNAVAILABLE", "No gateway accepts connections");
          return;
        }
        const u = new URL(target);
        const up = http.request({
          host: u.hostname,
          port: Number(u.port),
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: u.host, connection: "close" },
          agent: false,
        });
        let responded = false;
        up.on("response", (ur) => {
          responded = true;
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          res.flushHeaders();
          ur.pipe(res);
          ur.on("error", () => res.destroy());
          ur.on("aborted", () => res.destroy());
          // An SSE response ended by the backend: end ours too (the client resumes).
          ur.on("close", () => {
            if (!ur.complete) res.destroy();
          });
        });
        up.on("error", (err: NodeJS.ErrnoException) => {
          if (responded) {
            res.destroy();
            return;
          }
          // Refused: the request never reached this backend; try the next one.
          if (err.code === "ECONNREFUSED") attempt(i + 1);
          else answer(res, 502, "BAD_GATEWAY", `The gateway failed: ${err.code ?? err.message}`);
        });
        res.on("close", () => {
          if (!res.writableFinished) up.destroy();
        });
        up.end(body);
      };
      attempt(0);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    setBackends(urls) {
      backends = [...urls];
    },
    backends: () => [...backends],
    own,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Baseline "pipeline" SSE server: one ordered consumer on the report stream (new messages only);
 * each message is written as `event: report\nid: <seq>\ndata: <json>\n\n` to every client
 * connected for that message's tenant (`GET /stream?org_id=…&project_id=…`; the subject's last
 * two tokens name the tenant). No snapshot, no replay, no heartbeat.
 *
 * Environment: `NATS_URL`, `STREAM`, `PORT` (0 = any). Prints `{"ready":true,"port":N}` on
 * stdout once it listens and consumes.
 */
import type { ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import Fastify from "fastify";

const nc = await connect({ servers: process.env.NATS_URL, noAsyncTraces: true, name: "bench-sse" });
const js = jetstream(nc);
const clients = new Map<string, Set<ServerResponse>>();

const app = Fastify({ logger: false });
app.get("/stream", (req, reply) => {
  const q = req.query as { org_id?: string; project_id?: string };
  const key = `${q.org_id ?? "t"}.${q.project_id ?? "p"}`;
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.write(": connected\n\n");
  const set = clients.get(key) ?? new Set<ServerResponse>();
  clients.set(key, set);
  set.add(res);
  res.on("close", () => set.delete(res));
});
await app.listen({ host: "127.0.0.1", port: Number(process.env.PORT ?? 0) });

const consumer = await js.consumers.get(process.env.STREAM ?? "BENCH_REP", { deliver_policy: DeliverPolicy.New });
const messages = await consumer.consume();
process.stdout.write(`${JSON.stringify({ ready: true, port: (app.server.address() as AddressInfo).port })}\n`);
process.on("SIGTERM", () => {
  for (const set of clients.values()) for (const res of set) res.end();
  void Promise.allSettled([app.close(), nc.drain()]).then(() => process.exit(0));
});

for await (const m of messages) {
  const tokens = m.subject.split(".");
  const set = clients.get(`${tokens[tokens.length - 2]}.${tokens[tokens.length - 1]}`);
  if (!set || set.size === 0) continue;
  const frame = `event: report\nid: ${m.seq}\ndata: ${m.string()}\n\n`;
  for (const res of set) res.write(frame);
}

/**
 * Baseline "pubAck" (also the front door of the "pipeline" baseline): Fastify `POST /cmd` →
 * `js.publish("<SUBJECT_PREFIX>.<org>.<project>", body)` → 202 `{accepted:true}` after the
 * PubAck. The tenant comes from `x-org-id` / `x-project-id`, as in the gateway. Nothing else: no
 * validation, no database, no idempotency, no report.
 *
 * Environment: `NATS_URL`, `SUBJECT_PREFIX` (a stream must already cover `<prefix>.>`), `PORT`
 * (0 = any), `COALESCE_WRITES` (`true`: connect with nats.js's patched `coalesceWrites`, as our
 * services do — the `pubAckCoalesced` reference; default: the stock flush). Prints
 * `{"ready":true,"port":N}` on stdout once it listens.
 */
import type { AddressInfo } from "node:net";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import Fastify from "fastify";

const prefix = process.env.SUBJECT_PREFIX ?? "bench.ack";
const nc = await connect({
  servers: process.env.NATS_URL,
  noAsyncTraces: true,
  coalesceWrites: process.env.COALESCE_WRITES === "true",
  name: "bench-pub-ack",
});
const js = jetstream(nc);

const app = Fastify({ logger: false });
app.post("/cmd", async (req, reply) => {
  const org = String(req.headers["x-org-id"] ?? "t");
  const project = String(req.headers["x-project-id"] ?? "p");
  await js.publish(`${prefix}.${org}.${project}`, JSON.stringify(req.body));
  return reply.code(202).send({ accepted: true });
});
await app.listen({ host: "127.0.0.1", port: Number(process.env.PORT ?? 0) });
process.stdout.write(`${JSON.stringify({ ready: true, port: (app.server.address() as AddressInfo).port })}\n`);
process.on("SIGTERM", () => void Promise.allSettled([app.close(), nc.drain()]).then(() => process.exit(0)));

/**
 * Reference "acceptCore": Fastify `POST /cmd` → the gateway's own accept code → 202 after the
 * PubAck. It runs exactly what `POST /sidecar/command` runs between the parsed body and the
 * reply — `normaliseCommandRequest`, `validateCommand` (the type's zod params), the body hash,
 * the command message, its headers (msg id, tenant, correlation id, traceparent, kind, type) and
 * the create-if-absent publish (`Nats-Expected-Last-Subject-Sequence: 0`) on a connection set up
 * as the gateway's (`coalesceWrites`, patches/README.md) — and none of the
 * gateway's cross-cutting layers: no authentication or roles, rate limit, security headers,
 * input guards, request log, metrics, trace binding, OpenAPI response serialisation or error
 * mapping. The tenant comes from `x-org-id` / `x-project-id`, as in the pubAck baseline.
 *
 * Between pubAck and ours it splits the accept gap in two measured parts: acceptCore / pubAck is
 * what our accept itself costs, ours / acceptCore what the layers around it cost.
 *
 * Environment: `NATS_URL` (a stream must cover `nexus.cmd.>`), `PORT` (0 = any). Prints
 * `{"ready":true,"port":N}` on stdout once it listens.
 */
import type { AddressInfo } from "node:net";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { normaliseCommandRequest } from "@nexus/contracts";
import { isNatsConnected } from "@nexus/messaging";
import Fastify from "fastify";
import type { GatewayDeps } from "../../../services/gateway/src/deps.ts";
import { acceptCommand, validateCommand } from "../../../services/gateway/src/write/accept-command.ts";

// The gateway's connection settings (connectNats): `coalesceWrites` too, so the split below
// charges the connection policy to "our accept", not to the layers.
const nc = await connect({
  servers: process.env.NATS_URL,
  noAsyncTraces: true,
  coalesceWrites: true,
  name: "bench-accept-core",
});
const js = jetstream(nc);
// What acceptCommand reads of the gateway's dependencies. readLast answers "nothing stored":
// the bench never reuses a command id, so the duplicate path is not taken.
const deps = {
  js,
  config: { PUBLISH_TIMEOUT_MS: 5000 },
  now: () => new Date(),
  natsConnected: () => isNatsConnected(nc),
  readLast: async () => null,
} as Pick<GatewayDeps, "js" | "now" | "natsConnected" | "readLast"> & {
  config: Pick<GatewayDeps["config"], "PUBLISH_TIMEOUT_MS">;
} as GatewayDeps;
// The gateway takes the request's trace from its onRequest hook; this one is fixed.
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

const app = Fastify({ logger: false });
app.post("/cmd", async (req, reply) => {
  const tenant = {
    org_id: String(req.headers["x-org-id"] ?? "t"),
    project_id: String(req.headers["x-project-id"] ?? "p"),
  };
  const n = normaliseCommandRequest(req.body);
  if (!n.ok) return reply.code(400).send({ error: n.error.message });
  const accepted = await acceptCommand(deps, tenant, "user:bench", validateCommand(n.command), TRACEPARENT);
  return reply.code(202).send(accepted);
});
await app.listen({ host: "127.0.0.1", port: Number(process.env.PORT ?? 0) });
process.stdout.write(`${JSON.stringify({ ready: true, port: (app.server.address() as AddressInfo).port })}\n`);
process.on("SIGTERM", () => void Promise.allSettled([app.close(), nc.drain()]).then(() => process.exit(0)));

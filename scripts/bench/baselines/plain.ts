/**
 * Baseline "plain": Fastify `POST /cmd` → 202 `{accepted:true}`. The floor of any HTTP front
 * door on this machine: JSON body parsed, nothing stored. Run by the bench as `node plain.ts`;
 * prints one JSON line `{"ready":true,"port":N}` on stdout once it listens.
 */
import type { AddressInfo } from "node:net";
import Fastify from "fastify";

const app = Fastify({ logger: false });
app.post("/cmd", async (_req, reply) => reply.code(202).send({ accepted: true }));
await app.listen({ host: "127.0.0.1", port: Number(process.env.PORT ?? 0) });
process.stdout.write(`${JSON.stringify({ ready: true, port: (app.server.address() as AddressInfo).port })}\n`);
process.on("SIGTERM", () => void app.close().then(() => process.exit(0)));

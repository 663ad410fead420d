import type { NatsConnection } from "@nats-io/nats-core";
import Fastify, { type FastifyInstance } from "fastify";
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { type Kysely, sql } from "kysely";
import type { Logger } from "pino";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import type { Database } from "../db/schema.ts";
import { redactUrl } from "../logger.ts";
import { installErrorHandling } from "./errors.ts";

/** Options of {@link createHttpApp}. */
export interface HttpAppOptions {
  logger: Logger;
  /** Body limit in bytes (default 2 MiB, CONTRACT.md). */
  bodyLimitBytes?: number;
  /** The metrics registry (one per process). */
  metrics: Registry;
}

/** A per-process Prometheus registry with Node default metrics and a `service` label. */
export function createMetrics(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * A Fastify instance with what every service's HTTP side shares: zod type provider, the
 * standard error body for every failure, request logging with secrets redacted, an HTTP
 * duration histogram, and `GET /metrics`.
 */
export function createHttpApp(opts: HttpAppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.logger,
    bodyLimit: opts.bodyLimitBytes ?? 2 * 1024 * 1024,
    disableRequestLogging: true,
    genReqId: () => crypto.randomUUID(),
    requestIdHeader: "x-request-id",
    return503OnClosing: true,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app as unknown as FastifyInstance);

  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration",
    labelNames: ["method", "route", "status"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [opts.metrics],
  });
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unknown";
    duration.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    if (route !== "/health" && route !== "/metrics" && route !== "/ready")
      req.log.info(
        { method: req.method, url: redactUrl(req.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
        "http",
      );
  });
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    reply.type(opts.metrics.contentType);
    return opts.metrics.metrics();
  });
  return app as unknown as FastifyInstance;
}

/**
 * Adds `GET /health` (the process is alive) and `GET /ready` (NATS and Postgres answer; 503
 * with the standard error body otherwise).
 */
export function addHealthRoutes(app: FastifyInstance, deps: { nc: NatsConnection; db: Kysely<Database> }): void {
  app.get("/health", { schema: { hide: true } }, async () => ({ status: "ok" }));
  app.get("/ready", { schema: { hide: true } }, async (_req, reply) => {
    const checks = { nats: false, postgres: false };
    try {
      if (!deps.nc.isClosed()) {
        await deps.nc.flush();
        checks.nats = true;
      }
    } catch {}
    try {
      await sql`select 1`.execute(deps.db);
      checks.postgres = true;
    } catch {}
    if (checks.nats && checks.postgres) return { status: "ready", checks };
    return reply.code(503).send({
      error: { code: "DEPENDENCY_UNAVAILABLE", message: "NATS or Postgres is unreachable", recoverable: true },
      checks,
    });
  });
}

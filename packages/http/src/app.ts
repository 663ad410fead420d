import type { IncomingMessage, ServerResponse } from "node:http";
import fastifyHelmet from "@fastify/helmet";
import { AppError } from "@nexus/core";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController, type RawServerDefault } from "fastify";
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import type { Logger } from "pino";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { installErrorHandling, sendError } from "./errors.ts";
import { clientErrorHandler, installInputGuards } from "./hardening.ts";

/**
 * A Fastify instance whose routes take zod schemas and whose handlers see the parsed,
 * typed `req.body` / `req.params` / `req.query` (no casts).
 */
export type App = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** Options of {@link createHttpApp}. */
export interface HttpAppOptions {
  logger: Logger;
  /** Body limit in bytes (default 2 MiB, CONTRACT.md). */
  bodyLimitBytes?: number;
  /** The metrics registry (one per process). */
  metrics: Registry;
  /**
   * While closing, answer requests that still arrive on open keep-alive connections with
   * `503 DEPENDENCY_UNAVAILABLE` (standard error body, `Connection: close`; nothing was done, so
   * the client may retry elsewhere) instead of handling them (default true).
   */
  return503OnClosing?: boolean;
  /**
   * Which proxies to trust for the client address (`req.ip`, used to limit failed
   * authentications): `false` (default, the socket's peer), `true`, or addresses/CIDRs (a
   * comma-separated string or a list).
   */
  trustProxy?: boolean | string | string[];
}

/** A per-process Prometheus registry with Node default metrics and a `service` label. */
export function createMetrics(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Replaces the value of secret query parameters (`token`, `api_key`, `ticket`, …) in a URL for logging. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:token|api_key|access_token|ticket)=)[^&#]*/gi, "$1[redacted]");
}

/**
 * A Fastify instance with what every service's HTTP side shares: the zod type provider, the
 * standard error body for every failure, one access-log line per request with secrets
 * redacted, an HTTP duration histogram, and `GET /metrics`.
 */
export function createHttpApp(opts: HttpAppOptions): App {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: opts.bodyLimitBytes ?? 2 * 1024 * 1024,
    // Fastify's own request logging is off (it would log raw URLs); the onResponse hook below logs.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => crypto.randomUUID(),
    requestIdHeader: "x-request-id",
    // Fastify's own 503 while closing has a body of its own; the hook below answers instead.
    return503OnClosing: false,
    trustProxy: opts.trustProxy ?? false,
    clientErrorHandler,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app as unknown as FastifyInstance);
  if (opts.return503OnClosing ?? true) {
    let closing = false;
    app.addHook("preClose", async () => {
      closing = true;
    });
    app.addHook("onRequest", async (req, reply) => {
      if (!closing) return;
      reply.header("connection", "close");
      return sendError(
        req,
        reply,
        new AppError("DEPENDENCY_UNAVAILABLE", "The service is shutting down; nothing was done"),
      );
    });
  }
  installInputGuards(app as unknown as FastifyInstance);
  // Security headers on every response (API and console): a strict Content-Security-Policy
  // (same origin only, no framing), nosniff, no referrer, no cross-origin embedding.
  void app.register(fastifyHelmet, {
    global: true,
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", "data:", "blob:"],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        upgradeInsecureRequests: null,
      },
    },
    frameguard: { action: "deny" },
    referrerPolicy: { policy: "no-referrer" },
    strictTransportSecurity: false, // TLS ends at the ingress, which sets HSTS
  });

  const duration = new Histogram({
    name: "nexus_http_request_duration_seconds",
    help: "HTTP request duration, by method, route and status",
    labelNames: ["method", "route", "status"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [opts.metrics],
  });
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unknown";
    duration.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    if (route !== "/health" && route !== "/metrics" && route !== "/ready")
      req.log.info(
        {
          method: req.method,
          url: redactUrl(req.url),
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime),
          ...(req.correlationId ? { correlation_id: req.correlationId } : {}),
          ...(req.tenant ? { org_id: req.tenant.org_id, project_id: req.tenant.project_id } : {}),
        },
        "http",
      );
  });
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    reply.type(opts.metrics.contentType);
    return opts.metrics.metrics();
  });
  return app;
}

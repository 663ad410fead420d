import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyMultipart from "@fastify/multipart";
import fastifyRateLimit from "@fastify/rate-limit";
import fastifyReplyFrom from "@fastify/reply-from";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import { AppError } from "@nexus/core";
import { type App, addHealthRoutes, authPlugin, createHttpApp, sendError } from "@nexus/http";
import { sql } from "kysely";
import { consoleRuntimeConfig, consoleStatic } from "./console-static.ts";
import type { GatewayDeps } from "./deps.ts";
import { AUTH_ERRORS, errorResponses, QUERY_SECURITY, swaggerOptions } from "./openapi.ts";
import { approvalRoutes } from "./routes/approvals.ts";
import { archiveRoutes } from "./routes/archive.ts";
import { commandRoutes } from "./routes/commands.ts";
import { credentialRoutes } from "./routes/credentials.ts";
import { deadLetterRoutes } from "./routes/dead-letters.ts";
import { settingsRoutes } from "./routes/settings.ts";
import { startOutboxRelay } from "./write/settings.ts";

/** The API's version as the OpenAPI document states it. */
const API_VERSION = "0.1.0";

const DEFAULT_CONSOLE_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../packages/console/dist",
);

/**
 * Builds the gateway: auth/tenant, rate limit, multipart, OpenAPI at `/docs`, the console at
 * `/ui`, the command/approval/settings routes, the archive's history, audit export and tenant
 * purge, the stream proxy, `/health`, `/ready`, `/metrics`,
 * and the report-outbox relay (stopped by `app.close()`).
 */
export async function buildGateway(deps: GatewayDeps): Promise<App> {
  const app = createHttpApp({
    logger: deps.logger,
    bodyLimitBytes: deps.config.BODY_LIMIT_BYTES,
    metrics: deps.metrics,
    trustProxy: deps.config.TRUST_PROXY,
  });

  // JSON only (plus multipart on the photo route): anything else is 415 UNSUPPORTED_MEDIA_TYPE.
  app.removeContentTypeParser("text/plain");

  // OpenAPI 3.1 generated from the routes and the zod contracts (see openapi.ts).
  await app.register(fastifySwagger, swaggerOptions(API_VERSION));
  await app.register(fastifySwaggerUi, {
    routePrefix: "/docs",
    staticCSP: true,
    // The docs page may not be framed either (its own policy says 'self').
    transformStaticCSP: (csp) => csp.replace("frame-ancestors 'self'", "frame-ancestors 'none'"),
  });
  await app.register(authPlugin, { auth: deps.config, db: deps.db });
  await app.register(fastifyRateLimit, {
    max: deps.config.RATE_LIMIT_PER_MINUTE,
    timeWindow: 60_000,
    // Right after authentication (the auth plugin's onRequest hook is registered first): the
    // budget is the authenticated tenant's and principal's, so one tenant's flood never spends
    // another's (behind an ingress every client shares one address), and a refused request
    // costs no body parsing or validation.
    hook: "onRequest",
    keyGenerator: (req) =>
      req.tenant ? `${req.tenant.org_id}/${req.tenant.project_id}/${req.principal}` : `ip:${req.ip}`,
    allowList: (req) => ["/health", "/ready", "/metrics"].includes(req.url),
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: ctx.statusCode,
      code: "RATE_LIMITED",
      message: "Too many requests",
    }),
  });
  await app.register(fastifyMultipart, { limits: { fileSize: deps.config.PHOTO_LIMIT_BYTES, files: 1, fields: 5 } });

  // Settings reports whose publish after the commit was lost are published by this relay.
  const relay = startOutboxRelay(deps, { pollMs: deps.config.OUTBOX_POLL_MS });
  app.addHook("onClose", () => relay.stop());

  commandRoutes(app, deps);
  approvalRoutes(app, deps);
  settingsRoutes(app, deps);
  credentialRoutes(app, deps);
  archiveRoutes(app, deps);
  deadLetterRoutes(app, deps);
  // Ready while NATS answers: commands need nothing else. Postgres (decisions, settings) is
  // reported but does not take the gateway out of rotation: those routes answer 503 on their own.
  addHealthRoutes(app, {
    checks: { nats: deps.natsReady },
    informational: {
      postgres: async () => {
        await sql`select 1`.execute(deps.db);
        return true;
      },
    },
    graceMs: deps.config.READY_GRACE_MS,
  });

  // The report stream lives in the stream service; proxy it unbuffered so the UI needs one origin.
  // No pool cap: every open stream is one upstream connection (caps per tenant and principal
  // are the stream service's), so one tenant's many streams never starve another's.
  await app.register(fastifyReplyFrom, {
    base: deps.config.STREAM_URL,
    undici: {
      bodyTimeout: 0,
      headersTimeout: 10_000,
      connections: deps.config.STREAM_PROXY_MAX_CONNECTIONS,
      pipelining: 0,
    },
  });
  // Open proxied streams end when the gateway closes (their clients resume by Last-Event-ID
  // elsewhere); otherwise app.close() would wait for streams that never finish on their own.
  const streams = new Set<import("node:http").ServerResponse>();
  app.addHook("preClose", async () => {
    for (const res of streams) res.end();
  });
  app.get(
    "/agent/reports/stream",
    {
      schema: {
        tags: ["stream"],
        operationId: "streamReports",
        summary: "Server-Sent Events: snapshot, replay from Last-Event-ID, live reports (proxied)",
        security: QUERY_SECURITY,
        response: errorResponses(...AUTH_ERRORS, 503),
      },
    },
    (req, reply) => {
      streams.add(reply.raw);
      reply.raw.once("close", () => streams.delete(reply.raw));
      reply.from(req.url, {
        onError: (r, { error }) =>
          sendError(
            req,
            r as never,
            new AppError("DEPENDENCY_UNAVAILABLE", "The stream service is unavailable", undefined, { cause: error }),
          ),
      });
    },
  );

  await app.register(consoleStatic, {
    root: deps.config.CONSOLE_DIR ?? DEFAULT_CONSOLE_DIR,
    runtime: consoleRuntimeConfig(deps.config),
    connectOrigins: deps.config.CONSOLE_OIDC_CONNECT_ORIGINS,
  });
  return app;
}

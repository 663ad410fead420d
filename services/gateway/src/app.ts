import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyMultipart from "@fastify/multipart";
import fastifyRateLimit from "@fastify/rate-limit";
import fastifyReplyFrom from "@fastify/reply-from";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import { ErrorBody } from "@nexus/contracts";
import { AppError, addHealthRoutes, authPlugin, createHttpApp, sendError } from "@nexus/platform";
import type { FastifyInstance } from "fastify";
import { jsonSchemaTransform } from "fastify-type-provider-zod";
import { consoleStatic } from "./console-static.ts";
import type { GatewayDeps } from "./deps.ts";
import { approvalRoutes } from "./routes/approvals.ts";
import { commandRoutes } from "./routes/commands.ts";
import { settingsRoutes } from "./routes/settings.ts";

const DEFAULT_CONSOLE_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../packages/console/dist",
);

/**
 * Builds the gateway: auth/tenant, rate limit, multipart, OpenAPI at `/docs`, the console at
 * `/ui`, the command/approval/settings routes, the stream proxy, `/health`, `/ready`, `/metrics`.
 */
export async function buildGateway(deps: GatewayDeps): Promise<FastifyInstance> {
  const app = createHttpApp({
    logger: deps.logger,
    bodyLimitBytes: deps.config.BODY_LIMIT_BYTES,
    metrics: deps.metrics,
  });

  // JSON only (plus multipart on the photo route): anything else is 415 UNSUPPORTED_MEDIA_TYPE.
  app.removeContentTypeParser("text/plain");

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: "NEXUS Console API",
        version: "0.1.0",
        description: "See CONTRACT.md; errors use the standard error body.",
      },
      components: {
        securitySchemes: {
          orgId: { type: "apiKey", in: "header", name: "x-org-id" },
          projectId: { type: "apiKey", in: "header", name: "x-project-id" },
          bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
        },
      },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs" });
  await app.register(authPlugin, { auth: deps.config });
  await app.register(fastifyRateLimit, {
    max: deps.config.RATE_LIMIT_PER_MINUTE,
    timeWindow: 60_000,
    keyGenerator: (req) => `${req.headers["x-org-id"] ?? ""}/${req.headers["x-project-id"] ?? ""}/${req.ip}`,
    allowList: (req) => ["/health", "/ready", "/metrics"].includes(req.url),
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: ctx.statusCode,
      code: "RATE_LIMITED",
      message: "Too many requests",
    }),
  });
  await app.register(fastifyMultipart, { limits: { fileSize: deps.config.PHOTO_LIMIT_BYTES, files: 1, fields: 5 } });

  commandRoutes(app, deps);
  approvalRoutes(app, deps);
  settingsRoutes(app, deps);
  addHealthRoutes(app, { nc: deps.nc, db: deps.db });

  // The report stream lives in the stream service; proxy it unbuffered so the UI needs one origin.
  await app.register(fastifyReplyFrom, {
    base: deps.config.STREAM_URL,
    undici: { bodyTimeout: 0, headersTimeout: 10_000 },
  });
  app.get(
    "/agent/reports/stream",
    {
      schema: {
        tags: ["stream"],
        summary: "Server-Sent Events: snapshot, replay from Last-Event-ID, live reports (proxied)",
        response: { 400: ErrorBody, 503: ErrorBody },
      },
    },
    (req, reply) =>
      reply.from(req.url, {
        onError: (r, { error }) =>
          sendError(
            req,
            r as never,
            new AppError("DEPENDENCY_UNAVAILABLE", "The stream service is unavailable", undefined, { cause: error }),
          ),
      }),
  );

  await app.register(consoleStatic, { root: deps.config.CONSOLE_DIR ?? DEFAULT_CONSOLE_DIR });
  return app;
}

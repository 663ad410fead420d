import { randomFillSync } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { apiError, redactUrl } from "@nexus/contracts";
import { AppError } from "@nexus/core";
import { isSpanContextValid, trace } from "@opentelemetry/api";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  LogController,
  type RawServerDefault,
} from "fastify";
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import helmet, { type HelmetOptions } from "helmet";
import type { Logger } from "pino";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { installErrorHandling, sendError } from "./errors.ts";
import { clientErrorHandler, installInputGuards, urlProblem } from "./hardening.ts";
import { bindRequestLog, requestLoggerFactory, writeRequestLine } from "./request-log.ts";

declare module "fastify" {
  interface FastifyRequest {
    /**
     * The W3C `traceparent` of this request's trace: the active span's when tracing is on, else
     * a valid incoming `traceparent` header, else a new one. What the request publishes carries
     * it, so one command keeps one trace id from the request to its last report.
     */
    traceparent: string;
    /** Its trace id (32 hex digits); every log line of the request carries it as `trace_id`. */
    traceId: string;
  }
}

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** The request's trace (see `FastifyRequest.traceparent`). Source: W3C Trace Context §3.2. */
function requestTraceparent(header: string | string[] | undefined): string {
  const sc = trace.getActiveSpan()?.spanContext();
  if (sc && isSpanContextValid(sc))
    return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
  const h = typeof header === "string" ? header.trim().toLowerCase() : undefined;
  const m = h ? TRACEPARENT_RE.exec(h) : null;
  if (h && m && m[1] !== "0".repeat(32) && m[2] !== "0".repeat(16)) return h;
  const ids = randomHex(24);
  return `00-${ids.slice(0, 32)}-${ids.slice(32)}-01`;
}

/** Random bytes for new trace and span ids, drawn from a pool refilled 256 ids at a time. */
const idPool = Buffer.alloc(24 * 256);
let idPoolAt = idPool.length;

/** `n` (≤ 24) cryptographically random bytes as hex, from {@link idPool}. */
function randomHex(n: number): string {
  if (idPoolAt + n > idPool.length) {
    randomFillSync(idPool);
    idPoolAt = 0;
  }
  const hex = idPool.toString("hex", idPoolAt, idPoolAt + n);
  idPoolAt += n;
  return hex;
}

/**
 * The security policy of every response (API and console), in helmet's terms: a strict
 * Content-Security-Policy (same origin only, no framing), nosniff, no referrer, no cross-origin
 * embedding. HSTS is off because TLS ends at the ingress, which sets it.
 */
const SECURITY_POLICY: HelmetOptions = {
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
  strictTransportSecurity: false,
};

/**
 * The headers helmet's middleware sets for `options`, read once by running it against a
 * response that only records them (header names lower-cased). Only for policies that do not
 * depend on the request: no directive may be a function (nonces, per-request sources).
 * @throws {Error} when the middleware fails or does not finish synchronously.
 */
export function helmetHeaders(options: HelmetOptions): Readonly<Record<string, string>> {
  const headers = new Map<string, string>();
  const recorder = {
    setHeader: (name: string, value: unknown) => headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => headers.delete(name.toLowerCase()),
  };
  let finished = false;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err;
    finished = true;
  });
  if (!finished) throw new Error("helmet did not set its headers synchronously");
  return Object.freeze(Object.fromEntries(headers));
}

/**
 * The security headers of every response ({@link SECURITY_POLICY}), computed once. They are set
 * on the reply (`reply.headers`), not on the raw response: Node then writes the whole header
 * block from one object, where a header set with `res.setHeader` makes it merge two header sets
 * on every answer (6 % of the gateway's CPU per 202 in an A/B measurement, docs/benchmarks.md
 * item 9). A handler that takes the raw response over uses {@link hijackReply}, which keeps them.
 */
export const SECURITY_HEADERS = helmetHeaders(SECURITY_POLICY);

/**
 * Takes the raw response over from Fastify (`reply.hijack()`) for a streamed answer (SSE, NDJSON),
 * first copying onto it the headers that hooks set on the reply (the security headers, rate-limit
 * headers): Fastify writes those only for answers it sends itself.
 * @returns the raw response, headers not yet sent.
 */
export function hijackReply(reply: FastifyReply): ServerResponse {
  const res = reply.raw;
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) res.setHeader(name, value as string | number | readonly string[]);
  reply.hijack();
  return res;
}

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
  /** Body limit in bytes (default 2 MiB, docs/contract.md). */
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

/**
 * A Fastify instance with what every service's HTTP side shares: the zod type provider, the
 * standard error body for every failure, one access-log line per request with secrets
 * redacted, every log line of a request bound to its `trace_id` (and tenant and correlation id
 * once known), an HTTP duration histogram (`nexus_http_request_duration_seconds`), and
 * `GET /metrics`.
 */
export function createHttpApp(opts: HttpAppOptions): App {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: opts.bodyLimitBytes ?? 2 * 1024 * 1024,
    // Fastify's own request logging is off (it would log raw URLs); the onResponse hook below logs.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => crypto.randomUUID(),
    // req.log creates its pino child only when the request logs a line of its own (request-log.ts).
    childLoggerFactory: requestLoggerFactory,
    requestIdHeader: "x-request-id",
    // Fastify's own 503 while closing has a body of its own; the hook below answers instead.
    return503OnClosing: false,
    trustProxy: opts.trustProxy ?? false,
    clientErrorHandler,
    // A path whose percent-escapes do not decode fails in the router, before any hook.
    frameworkErrors: (err, _req, res) => {
      const reply = res as unknown as FastifyReply;
      void reply.code(400).send({
        error: apiError("VALIDATION_FAILED", err.message, [{ path: "url", issue: "malformed percent-escape" }]),
      });
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app as unknown as FastifyInstance);
  let closing = false;
  if (opts.return503OnClosing ?? true)
    app.addHook("preClose", async () => {
      closing = true;
    });
  // What every request needs first, in one synchronous hook (no promise per request): the
  // security headers (SECURITY_HEADERS: on every answer, errors included), the trace and its
  // log binding, the closing check, and the URL guard (hardening.ts).
  app.decorateRequest("traceparent", "");
  app.decorateRequest("traceId", "");
  app.addHook("onRequest", (req, reply, done) => {
    reply.headers(SECURITY_HEADERS);
    req.traceparent = requestTraceparent(req.headers.traceparent);
    // "00-<trace id>-<span id>-<flags>" (always well-formed: requestTraceparent).
    req.traceId = req.traceparent.slice(3, 35);
    bindRequestLog(req, { trace_id: req.traceId });
    if (closing) {
      reply.header("connection", "close");
      sendError(req, reply, new AppError("DEPENDENCY_UNAVAILABLE", "The service is shutting down; nothing was done"));
      return; // answered: the hook chain ends here
    }
    done(urlProblem(req.url));
  });
  installInputGuards(app as unknown as FastifyInstance);
  // Every log line of a request carries its trace id (above), and once authenticated its tenant.
  app.addHook("preHandler", (req, _reply, done) => {
    if (req.tenant) bindRequestLog(req, { org_id: req.tenant.org_id, project_id: req.tenant.project_id });
    if (req.correlationId) bindRequestLog(req, { correlation_id: req.correlationId });
    done();
  });

  const duration = new Histogram({
    name: "nexus_http_request_duration_seconds",
    help: "HTTP request duration, by method, route and status",
    labelNames: ["method", "route", "status"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [opts.metrics],
  });
  app.addHook("onResponse", (req, reply, done) => {
    const route = req.routeOptions.url ?? "unknown";
    duration.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    if (route !== "/health" && route !== "/metrics" && route !== "/ready") {
      // Whatever a failed authentication or a handler set late is bound now (tenant, correlation id).
      if (req.tenant) bindRequestLog(req, { org_id: req.tenant.org_id, project_id: req.tenant.project_id });
      bindRequestLog(req, { correlation_id: req.correlationId });
      writeRequestLine(
        req,
        { method: req.method, url: redactUrl(req.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
        "http",
      );
    }
    done();
  });
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    reply.type(opts.metrics.contentType);
    return opts.metrics.metrics();
  });
  return app;
}

import { type ApiError, apiError, type ErrorBody, type ErrorCode } from "@nexus/contracts";
import { AppError, isAppError, isPgUnavailable } from "@nexus/core";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's correlation id: from the body, `x-correlation-id`, or generated. */
    correlationId?: string;
  }
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "MALFORMED_JSON",
  FST_ERR_CTP_EMPTY_JSON_BODY: "MALFORMED_JSON",
  FST_ERR_CTP_BODY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_REQ_FILE_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_PARTS_LIMIT: "PAYLOAD_TOO_LARGE",
  FST_FILES_LIMIT: "VALIDATION_FAILED",
  FST_INVALID_MULTIPART_CONTENT_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "VALIDATION_FAILED",
};

/** Maps any thrown error to the catalogue entry and body it is answered with. */
export function toApiError(err: unknown): { status: number; error: ApiError; internal: boolean } {
  if (isAppError(err)) {
    const e = apiError(err.code, err.message, err.details);
    return { status: err.status, error: err.stage ? { ...e, stage: err.stage } : e, internal: false };
  }
  const fe = err as FastifyError;
  if (hasZodFastifySchemaValidationErrors(fe)) {
    const details = fe.validation.map((v) => ({
      path: [fe.validationContext, ...v.instancePath.split("/").filter(Boolean)].filter(Boolean).join("."),
      issue: v.message ?? "invalid",
    }));
    return { status: 400, error: apiError("VALIDATION_FAILED", undefined, details), internal: false };
  }
  const mapped = fe?.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) {
    const e = new AppError(mapped);
    return { status: e.status, error: apiError(mapped), internal: false };
  }
  if (fe?.statusCode === 429) return { status: 429, error: apiError("RATE_LIMITED"), internal: false };
  if (fe instanceof SyntaxError) return { status: 400, error: apiError("MALFORMED_JSON"), internal: false };
  if (isPgUnavailable(err)) return { status: 503, error: apiError("DEPENDENCY_UNAVAILABLE"), internal: true };
  if (typeof fe?.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: fe.statusCode, error: apiError("VALIDATION_FAILED", fe.message), internal: false };
  }
  return { status: 500, error: apiError("INTERNAL"), internal: true };
}

/**
 * How long, after an answer sent before its request's body has arrived, the rest of the body is
 * read and discarded before the connection is dropped: 5 s, nginx's `lingering_timeout`.
 */
export const LINGER_MS = 5_000;

/**
 * A lingering close (RFC 9112 §9.6; nginx's `lingering_close`) for a body refused before it has
 * arrived — a 413 from the declared length or past the limit, a 415 (Fastify's content-type
 * parser errors, {@link isBodyRefusal}). Fastify marks such answers `Connection: close`, and
 * Node then closes the socket as soon as the answer is written, with the client's body still
 * arriving: the client's TCP stack receives a reset and drops the answer unread (fetch fails
 * with EPIPE or ECONNRESET instead of showing the 413). Instead the connection stays open: Node
 * reads the rest of the body and discards it, then the connection serves the next request. A
 * body that has not ended {@link LINGER_MS} after the answer has its connection destroyed, so a
 * client cannot hold one open by sending forever. No-op when the body has arrived.
 */
export function lingerForBody(request: FastifyRequest, reply: FastifyReply): void {
  const req = request.raw;
  if (req.complete) return;
  const expectsBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  if (!expectsBody) return;
  if (String(reply.getHeader("connection") ?? "").toLowerCase() === "close") reply.removeHeader("connection");
  const socket = req.socket;
  const timer = setTimeout(() => {
    if (!req.complete) socket.destroy();
  }, LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  req.once("end", () => clearTimeout(timer));
}

/** Whether `err` is Fastify's content-type parser refusing the body (413, 415, bad length…). */
export function isBodyRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("FST_ERR_CTP_");
}

/**
 * Sends the standard error body. 5xx bodies carry the catalogue message, never internals. A body
 * refused before it has arrived is lingered for ({@link lingerForBody}).
 */
export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const { status, error, internal } = toApiError(err);
  // Only for the body parser's refusals: any other `Connection: close` (a closing server's 503)
  // is meant, and other early answers keep their connection anyway (Node discards the body).
  if (isBodyRefusal(err)) lingerForBody(request, reply);
  if (status >= 500) request.log.error({ err, correlation_id: request.correlationId }, "request failed");
  else request.log.info({ code: error.code, correlation_id: request.correlationId }, "request rejected");
  const body: ErrorBody = {
    error: internal ? { ...apiError(error.code), ...(error.stage ? { stage: error.stage } : {}) } : error,
    correlation_id: request.correlationId ?? request.id,
  };
  return reply.code(status).type("application/json").send(body);
}

/**
 * Installs the error and not-found handlers: every failure, including Fastify's own
 * (bad JSON, 413, 415, 429), is answered with the standard error body of docs/contract.md.
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new AppError("NOT_FOUND", `No route ${request.method} ${request.url.split("?")[0]}`)),
  );
}

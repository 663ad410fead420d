import { z } from "zod";

/**
 * The closed catalogue of error codes (docs/contract.md "The standard error body").
 * Each maps to one HTTP status and a `recoverable` flag in {@link errorSpec}.
 */
export const ErrorCode = z.enum([
  "VALIDATION_FAILED",
  "MALFORMED_JSON",
  "INVALID_TENANT",
  "UNKNOWN_COMMAND_TYPE",
  "UNAUTHENTICATED",
  "CREDENTIAL_EXPIRED",
  "TENANT_MISMATCH",
  "FORBIDDEN",
  "SELF_APPROVAL_FORBIDDEN",
  "NOT_FOUND",
  "ASK_NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "ASK_ALREADY_DECIDED",
  "ASK_EXPIRED",
  "RISK_LOWERING_FORBIDDEN",
  "PAYLOAD_TOO_LARGE",
  "URI_TOO_LONG",
  "HEADERS_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "RATE_LIMITED",
  "DEPENDENCY_UNAVAILABLE",
  "ACCEPT_UNCONFIRMED",
  "INTERNAL",
  "CURSOR_EXPIRED",
  "HANDLER_FAILED",
  "INSUFFICIENT_SLOTS",
  "RETRIES_EXHAUSTED",
  "POISON_MESSAGE",
  "ACTION_CHANGED",
  "POLICY_CHANGED",
  "CONNECTOR_FAILED",
  "LLM_TIMEOUT",
  "LLM_RATE_LIMITED",
  "LLM_UNAVAILABLE",
  "LLM_BUDGET_EXCEEDED",
  "LLM_BAD_OUTPUT",
  "DEAD_LETTER_NOT_REQUEUEABLE",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** HTTP status, default message and whether retrying the same request may succeed. */
export interface ErrorSpec {
  status: number;
  message: string;
  recoverable: boolean;
}

function assertNever(x: never): never {
  throw new Error(`unhandled error code ${String(x)}`);
}

/**
 * The one place a code is mapped to its HTTP status (exhaustive `switch`).
 * Codes that only appear inside reports or SSE (`CURSOR_EXPIRED`, `HANDLER_FAILED`, …) carry
 * the status they would have over HTTP, for logging.
 */
export function errorSpec(code: ErrorCode): ErrorSpec {
  switch (code) {
    case "VALIDATION_FAILED":
      return { status: 400, message: "The request does not match its schema", recoverable: false };
    case "MALFORMED_JSON":
      return { status: 400, message: "The request body is not valid JSON", recoverable: false };
    case "INVALID_TENANT":
      return {
        status: 400,
        message: "org_id and project_id must be 1-64 characters of [A-Za-z0-9_-]",
        recoverable: false,
      };
    case "UNKNOWN_COMMAND_TYPE":
      return { status: 400, message: "Unknown command type", recoverable: false };
    case "RISK_LOWERING_FORBIDDEN":
      return {
        status: 400,
        message: "A risk override may raise a type's level but never lower it below its default",
        recoverable: false,
      };
    case "UNAUTHENTICATED":
      return { status: 401, message: "Missing or invalid credentials", recoverable: false };
    case "CREDENTIAL_EXPIRED":
      return {
        status: 401,
        message: "The credential expired; authenticate again and resume from the last report id",
        recoverable: true,
      };
    case "TENANT_MISMATCH":
      return { status: 403, message: "The tenant headers do not match the credentials", recoverable: false };
    case "FORBIDDEN":
      return { status: 403, message: "The principal's roles do not allow this", recoverable: false };
    case "SELF_APPROVAL_FORBIDDEN":
      return { status: 403, message: "The principal who sent a RED command may not approve it", recoverable: false };
    case "NOT_FOUND":
      return { status: 404, message: "Not found", recoverable: false };
    case "ASK_NOT_FOUND":
      return { status: 404, message: "No such ask", recoverable: false };
    case "IDEMPOTENCY_CONFLICT":
      return { status: 409, message: "This command_id was already used with a different body", recoverable: false };
    case "ASK_ALREADY_DECIDED":
      return { status: 409, message: "The ask was already decided differently", recoverable: false };
    case "ASK_EXPIRED":
      return { status: 409, message: "The ask has expired", recoverable: false };
    case "PAYLOAD_TOO_LARGE":
      return { status: 413, message: "The request body is too large", recoverable: false };
    case "URI_TOO_LONG":
      return { status: 414, message: "The URL is too long", recoverable: false };
    case "HEADERS_TOO_LARGE":
      return { status: 431, message: "The request's header fields are too large", recoverable: false };
    case "UNSUPPORTED_MEDIA_TYPE":
      return { status: 415, message: "Unsupported content type", recoverable: false };
    case "RATE_LIMITED":
      return { status: 429, message: "Too many requests", recoverable: true };
    case "DEPENDENCY_UNAVAILABLE":
      return {
        status: 503,
        message: "A dependency is unavailable; nothing was stored and the request will never take effect",
        recoverable: true,
      };
    case "ACCEPT_UNCONFIRMED":
      return {
        status: 504,
        message:
          "The request may have been stored, but its confirmation did not arrive in time; retry the same request to learn the outcome",
        recoverable: true,
      };
    case "INTERNAL":
      return { status: 500, message: "Internal error", recoverable: true };
    case "CURSOR_EXPIRED":
      return { status: 410, message: "The cursor is outside retention; a fresh snapshot follows", recoverable: true };
    case "HANDLER_FAILED":
      return { status: 500, message: "The command handler failed", recoverable: false };
    case "INSUFFICIENT_SLOTS":
      return { status: 422, message: "Fewer than 3 conflict-free slots exist", recoverable: false };
    case "RETRIES_EXHAUSTED":
      return { status: 500, message: "The command failed after all retries", recoverable: false };
    case "POISON_MESSAGE":
      return { status: 400, message: "The message does not match its schema", recoverable: false };
    case "ACTION_CHANGED":
      return { status: 409, message: "The action differs from the one that was approved", recoverable: false };
    case "POLICY_CHANGED":
      return { status: 409, message: "The compliance policy changed after the ask was created", recoverable: false };
    case "CONNECTOR_FAILED":
      return { status: 502, message: "The connector could not carry out the action", recoverable: true };
    case "LLM_TIMEOUT":
      return { status: 504, message: "The language model did not answer in time", recoverable: true };
    case "LLM_RATE_LIMITED":
      return { status: 429, message: "The language model provider is rate limiting requests", recoverable: true };
    case "LLM_UNAVAILABLE":
      return { status: 503, message: "No language model provider could answer", recoverable: true };
    case "LLM_BUDGET_EXCEEDED":
      return {
        status: 429,
        message: "The tenant's daily language-model budget is spent; no model call was made",
        recoverable: false,
      };
    case "LLM_BAD_OUTPUT":
      return {
        status: 502,
        message: "The language model's answer did not have the required shape",
        recoverable: false,
      };
    case "DEAD_LETTER_NOT_REQUEUEABLE":
      return { status: 409, message: "This dead letter cannot run again; drop it instead", recoverable: false };
    default:
      return assertNever(code);
  }
}

/** One validation problem: `path` is dotted (`params.text`), `issue` is human readable. */
export const ErrorDetail = z.object({ path: z.string(), issue: z.string() });
export type ErrorDetail = z.infer<typeof ErrorDetail>;

/** The inner `error` object of the standard error body; also the payload of SSE `error` events. */
export const ApiError = z.object({
  code: ErrorCode,
  message: z.string(),
  recoverable: z.boolean(),
  details: z.array(ErrorDetail).optional(),
  /** Where it happened (`auth`, `validate`, `publish`, `replay`, `snapshot`, `llm`, `execute`, …); additive. */
  stage: z.string().optional(),
});
export type ApiError = z.infer<typeof ApiError>;

/** The standard error body of every non-2xx HTTP answer. */
export const ErrorBody = z.object({ error: ApiError, correlation_id: z.string().optional() });
export type ErrorBody = z.infer<typeof ErrorBody>;

/** Builds an {@link ApiError} with the catalogue's message unless one is given. */
export function apiError(code: ErrorCode, message?: string, details?: ErrorDetail[]): ApiError {
  const spec = errorSpec(code);
  return {
    code,
    message: message ?? spec.message,
    recoverable: spec.recoverable,
    ...(details && details.length > 0 ? { details } : {}),
  };
}

/** Converts zod issues to `{path, issue}` details, prefixing each path with `prefix`. */
export function zodDetails(error: z.ZodError, prefix?: string): ErrorDetail[] {
  return error.issues.map((i) => ({
    path: [prefix, ...i.path.map(String)].filter((p) => p !== undefined && p !== "").join("."),
    issue: i.message,
  }));
}

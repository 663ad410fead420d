import { type ErrorCode, type ErrorDetail, errorSpec } from "@nexus/contracts";

/**
 * An error that maps to one entry of the error catalogue; the HTTP error handler and the SSE
 * `error` event turn it into the standard error body. Never match on its message.
 */
export class AppError extends Error {
  override name = "AppError";
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly details?: ErrorDetail[],
    options?: { cause?: unknown },
  ) {
    super(message ?? errorSpec(code).message, options);
    this.status = errorSpec(code).status;
  }
}

/** True for {@link AppError}. */
export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A dependency (NATS or Postgres) did not answer: nothing was accepted (503). */
export class DependencyUnavailable extends AppError {
  override name = "DependencyUnavailable";
  constructor(dependency: "nats" | "postgres", cause: unknown) {
    super(
      "DEPENDENCY_UNAVAILABLE",
      `${dependency === "nats" ? "NATS JetStream" : "Postgres"} is unavailable; nothing was accepted`,
      undefined,
      {
        cause,
      },
    );
  }
}

const PG_CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08003",
  "08006",
]);

/** True when `err` says Postgres could not be reached (connection refused/reset, admin shutdown). */
export function isPgUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  if (e.code && PG_CONNECTION_CODES.has(e.code)) return true;
  return (
    e.message === "Connection terminated unexpectedly" ||
    /timeout exceeded when trying to connect/i.test(e.message ?? "")
  );
}

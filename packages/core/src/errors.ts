import { type ErrorCode, type ErrorDetail, errorSpec } from "@nexus/contracts";

/**
 * An error that maps to one entry of the error catalogue (`ErrorCode` in contracts); the HTTP
 * error handler and the SSE `error` event turn it into the standard error body. Never match on
 * its message: use `code` or the `isX()` predicates.
 */
export class AppError extends Error {
  override name = "AppError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;
  /** Where it happened (`auth`, `validate`, `publish`, …), carried to the error body as `stage`. */
  readonly stage: string | undefined;
  constructor(
    code: ErrorCode,
    message?: string,
    details?: ErrorDetail[],
    options?: { cause?: unknown; stage?: string },
  ) {
    super(message ?? errorSpec(code).message, options);
    this.code = code;
    this.status = errorSpec(code).status;
    this.details = details;
    this.stage = options?.stage;
  }
}

/** True for {@link AppError} and its subclasses. */
export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** The dependencies whose failures the writing endpoints answer for. */
export type Dependency = "nats" | "postgres";

const NAMES: Record<Dependency, string> = { nats: "NATS JetStream", postgres: "Postgres" };

/**
 * `503 DEPENDENCY_UNAVAILABLE`: nothing was stored, and the request will never take effect,
 * not even later (docs/contract.md "What an answer promises"). Throw it only when
 * that is certain: the write was refused, or never left this process.
 */
export class DependencyUnavailable extends AppError {
  override name = "DependencyUnavailable";
  readonly dependency: Dependency;
  constructor(dependency: Dependency, cause: unknown, stage?: string) {
    super("DEPENDENCY_UNAVAILABLE", `${NAMES[dependency]} is unavailable; nothing was stored`, undefined, {
      cause,
      stage,
    });
    this.dependency = dependency;
  }
}

/**
 * `504 ACCEPT_UNCONFIRMED`: the write left this process but its confirmation (a PubAck, a
 * COMMIT's answer) did not arrive; it may take effect. Retrying the same request learns the
 * outcome (docs/contract.md "What an answer promises").
 */
export class AcceptUnconfirmed extends AppError {
  override name = "AcceptUnconfirmed";
  readonly dependency: Dependency;
  constructor(dependency: Dependency, cause: unknown, stage?: string) {
    super("ACCEPT_UNCONFIRMED", undefined, undefined, { cause, stage });
    this.dependency = dependency;
  }
}

/** True for {@link DependencyUnavailable}. */
export function isDependencyUnavailable(err: unknown): err is DependencyUnavailable {
  return err instanceof DependencyUnavailable;
}

/** True for {@link AcceptUnconfirmed}. */
export function isAcceptUnconfirmed(err: unknown): err is AcceptUnconfirmed {
  return err instanceof AcceptUnconfirmed;
}

/**
 * Postgres error codes and node-postgres conditions that mean "the server could not be
 * reached or went away": connection refused/reset/timed out, admin or crash shutdown
 * (SQLSTATE class 57P), connection exceptions (class 08), a statement timeout (57014) and a
 * pool that could not hand out a client in time.
 * Source: PostgreSQL Appendix A "PostgreSQL Error Codes"; node-postgres pool messages.
 */
const PG_CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "57P01",
  "57P02",
  "57P03",
  "57014",
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
]);

/** True when `err` says Postgres could not be reached or did not answer in time. */
export function isPgUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e || typeof e !== "object") return false;
  if (e.code && PG_CONNECTION_CODES.has(e.code)) return true;
  const m = e.message ?? "";
  return (
    m === "Connection terminated unexpectedly" ||
    m === "Connection terminated" ||
    m.startsWith("Connection terminated due to connection timeout") ||
    /timeout exceeded when trying to connect/i.test(m) ||
    /Client has encountered a connection error/i.test(m) ||
    /Query read timeout/i.test(m)
  );
}

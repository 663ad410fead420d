/**
 * Named server conditions (nats.js `JetStreamApiCodes`, nats-server `server/errors.json`) and
 * predicates over the errors nats.js throws, so callers never match on message text.
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { errors as coreErrors, RequestError } from "@nats-io/nats-core";
import { isDependencyUnavailable, isPgUnavailable } from "@nexus/core";

export { JetStreamApiCodes };

/** The server refused a publish because `Nats-Expected-Last-Subject-Sequence` did not match (10071). */
export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;
}

/** A stream (10059) or consumer (10014) does not exist. */
export function isNotFound(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound)
  );
}

/** No answer within the request's timeout (the request may still have been received). */
export function isNatsTimeout(err: unknown): boolean {
  return err instanceof coreErrors.TimeoutError;
}

/**
 * The request reached the server but nobody answered for the subject: for a JetStream publish,
 * no stream captured it, so nothing was stored. nats.js reports it as `JetStreamNotEnabled`
 * (with a `RequestError` no-responders cause) or as a no-responders `RequestError`.
 */
export function isNoResponders(err: unknown): boolean {
  if (err instanceof RequestError && err.isNoResponders()) return true;
  const cause = err instanceof Error ? err.cause : undefined;
  return cause instanceof RequestError && cause.isNoResponders();
}

/** JetStream answered the request with an API error: the request was refused, nothing stored. */
export function isJetStreamApiError(err: unknown): err is JetStreamApiError {
  return err instanceof JetStreamApiError;
}

/**
 * The server refused the request for lack of permission (the user may not publish to the
 * subject): nothing was stored. nats.js raises it directly or as the cause of a `RequestError`.
 */
export function isPermissionViolation(err: unknown): boolean {
  if (err instanceof coreErrors.PermissionViolationError) return true;
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof coreErrors.PermissionViolationError) return true;
  return err instanceof RequestError && /Permissions Violation/i.test(err.message);
}

/** The connection was closed or is draining: a buffered publish may never have left. */
export function isConnectionClosed(err: unknown): boolean {
  return err instanceof coreErrors.ClosedConnectionError || err instanceof coreErrors.DrainingConnectionError;
}

/** A dependency whose outage a worker waits out instead of spending a job's attempts. */
export type OutageDependency = "postgres" | "nats";

/**
 * Whether `err` (or one of its causes) says a dependency is unreachable rather than that the
 * job failed: Postgres could not be reached or stopped answering (connection refused or
 * reset, crash or admin shutdown, a pool or read timeout; not a server-side statement timeout,
 * which a slow statement causes), a NATS request timed out, had no responders, or the
 * connection closed, or the error is a {@link DependencyUnavailable}.
 * @returns the dependency, or `undefined` for any other error.
 */
export function dependencyOutage(err: unknown): OutageDependency | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 6 && e; depth++) {
    if (isDependencyUnavailable(e)) return e.dependency;
    if (isPgUnavailable(e) && (e as { code?: string }).code !== "57014") return "postgres";
    if (isNatsTimeout(e) || isNoResponders(e) || isConnectionClosed(e)) return "nats";
    e = e instanceof Error ? e.cause : undefined;
  }
  return undefined;
}

import type { ExternalShareParams, ExternalShareResult, Tenant } from "@nexus/contracts";

/** One external share to carry out: the approved `external_share.prepare` action. */
export interface ShareRequest {
  /** Deterministic per ask ({@link shareIdOf}), so a re-execution names the same share. */
  share_id: string;
  tenant: Tenant;
  ask_id: string;
  command_id: string;
  recipient: ExternalShareParams["recipient"];
  channel: ExternalShareParams["channel"];
  resource: ExternalShareParams["resource"];
  message?: string;
}

/**
 * Carries out approved external shares. Implementations must be idempotent per `share_id`:
 * the worker calls `share` again for the same ask after a crash or redelivery, and the second
 * call must not create a second share (docs/architecture.md invariant 3).
 */
export interface ShareConnector {
  /**
   * Performs (or enqueues) the share.
   * @param signal aborted when the worker shuts down; the call should give up promptly.
   * @returns the result stored on the ask and carried by `ask.executed`.
   * @throws {ConnectorError} `retryable: false` fails the ask at once (`CONNECTOR_FAILED`);
   *   any other error is treated as transient and the decision is redelivered with backoff.
   */
  share(req: ShareRequest, signal?: AbortSignal): Promise<ExternalShareResult>;
  /**
   * Withdraws a share that has not left the system yet (the ask failed after the share was
   * enqueued, e.g. retries exhausted). Optional; a no-op when nothing is pending.
   */
  cancel?(tenant: Tenant, shareId: string, reason: string): Promise<void>;
}

/** A failure a connector reports on purpose. Never match on its message. */
export class ConnectorError extends Error {
  override name = "ConnectorError";
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.retryable = retryable;
  }
}

/** True for {@link ConnectorError}. */
export function isConnectorError(err: unknown): err is ConnectorError {
  return err instanceof ConnectorError;
}

/** The share id of an ask: `share-<ask_id>` (one share per ask, ever). */
export function shareIdOf(askId: string): string {
  return `share-${askId}`;
}

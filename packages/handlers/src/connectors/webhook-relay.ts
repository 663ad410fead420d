import type { EventEmitter } from "node:events";
import { backoffMs, type Database, type ShareOutboxTable } from "@nexus/core";
import type { Kysely, Selectable } from "kysely";
import type { Logger } from "pino";

/** Typed events of the relay (`noun:verb`), for logging and metrics. */
export interface ShareRelayEventMap {
  /** A share was POSTed successfully. */
  "share:delivered": [{ share_id: string; attempts: number }];
  /** A share POST failed and will be retried. */
  "share:retry": [{ share_id: string; attempts: number; delay_ms: number; error: string }];
  /** A share gave up after the maximum number of attempts. */
  "share:failed": [{ share_id: string; attempts: number; error: string }];
}

/**
 * Webhook relay of the share outbox, signing by the Standard Webhooks specification
 * (https://www.standardwebhooks.com, with its reference library `standardwebhooks`).
 *
 * ## Signature scheme
 * Every POST carries
 * - `webhook-id: <share_id>` — the same on every attempt of one share: receivers dedupe on it;
 * - `webhook-timestamp: <unix seconds>` — when the request was signed;
 * - `webhook-signature: v1,<base64 HMAC-SHA256>` over `"<webhook-id>.<webhook-timestamp>.<body>"`,
 *   keyed with `SHARE_WEBHOOK_SECRET` — so the id, the time and the body are all covered;
 * - `Idempotency-Key: <share_id>` (the same value as `webhook-id`, for receivers that key on it);
 * - `Content-Type: application/json`.
 *
 * `SHARE_WEBHOOK_SECRET` is either a Standard Webhooks secret (`whsec_<base64>`) or any other
 * string of at least 16 characters, which is used as the raw key (see {@link webhookSigner}).
 * Receivers verify with any Standard Webhooks library (`new Webhook(secret).verify(body,
 * headers)`), which also refuses timestamps more than 5 minutes off (replays). Delivery is at
 * least once (a crash after the POST but before the database write, or a lost response, repeats
 * it).
 */
import { Webhook } from "standardwebhooks";

/** A Standard Webhooks signer/verifier for the secret: `whsec_…` as given, anything else as the raw key bytes (UTF-8). */
export function webhookSigner(secret: string): Webhook {
  return secret.startsWith("whsec_")
    ? new Webhook(secret)
    : new Webhook(new TextEncoder().encode(secret), { format: "raw" });
}

/** Settings of the relay (from `SHARE_WEBHOOK_*` / `WEBHOOK_*`, see `config.ts`). */
export interface WebhookRelaySettings {
  url: string;
  secret: string;
  /** Attempts before a share is marked `failed` (default 8). */
  maxAttempts: number;
  /** Timeout of one POST, milliseconds (default 5000). */
  timeoutMs: number;
  /** Poll period, milliseconds (default 500). */
  pollMs: number;
  /** Backoff base and cap between attempts, milliseconds (defaults 1000 / 300000). */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Shares claimed per poll (default 10). */
  batchSize?: number;
}

/** Dependencies of {@link createWebhookRelay}. */
export interface WebhookRelayDeps {
  db: Kysely<Database>;
  logger: Logger;
  events?: EventEmitter<ShareRelayEventMap>;
  clock?: () => Date;
  /** The fetch to use (default: Node's global fetch). */
  fetch?: typeof fetch;
}

/** A running relay. */
export interface WebhookRelay {
  /** Claims and delivers due shares once. @returns how many were attempted. */
  tick(): Promise<number>;
  /** Starts polling every `pollMs` (first poll at once). */
  start(): void;
  /**
   * Stops polling, aborts POSTs in flight (their shares are retried after the lease, without
   * counting an attempt) and waits for the poll in progress.
   */
  stop(): Promise<void>;
}

/** The JSON body POSTed for one share. */
export interface WebhookShareBody {
  share_id: string;
  ask_id: string;
  command_id: string;
  org_id: string;
  project_id: string;
  recipient: string;
  channel: string;
  resource: { ref: string; title: string };
  message: string | null;
  /** ISO 8601. */
  created_at: string;
}

/**
 * Receiver-side check of a delivery (what a receiver's code does, for tests and the README's
 * example): Standard Webhooks verification of id, timestamp (±5 min) and body.
 * @returns the parsed body, or `undefined` when the signature does not verify.
 */
export function verifyWebhook(secret: string, headers: Record<string, string>, rawBody: string): unknown {
  try {
    return webhookSigner(secret).verify(rawBody, headers);
  } catch {
    return undefined;
  }
}

type OutboxRow = Selectable<ShareOutboxTable>;

/** The body POSTed for an outbox row. */
export function webhookBody(row: OutboxRow): WebhookShareBody {
  const resource = row.resource as { ref: string; title: string };
  return {
    share_id: row.share_id,
    ask_id: row.ask_id,
    command_id: row.command_id,
    org_id: row.org_id,
    project_id: row.project_id,
    recipient: row.recipient,
    channel: row.channel,
    resource: { ref: resource.ref, title: resource.title },
    message: row.message,
    created_at: row.created_at.toISOString(),
  };
}

/**
 * Polls `share_outbox` for due rows (`status = 'queued' and next_attempt_at <= now`) and POSTs
 * each to the webhook.
 *
 * Claiming: one short transaction selects due rows `FOR UPDATE SKIP LOCKED` and pushes their
 * `next_attempt_at` past the POST timeout (a lease), so concurrent replicas never claim the same
 * share and no transaction stays open across HTTP. A replica that dies mid-POST leaves the row
 * to be retried when its lease ends (at-least-once; receivers dedupe on `Idempotency-Key`).
 *
 * Outcome: 2xx → `delivered` + `delivered_at`; anything else (status, network error, timeout)
 * → `attempts + 1`, `next_attempt_at = now + backoffMs(attempts, base, cap)` (exponential with
 * full jitter), and after `maxAttempts` attempts `failed` with `last_error`.
 */
export function createWebhookRelay(settings: WebhookRelaySettings, deps: WebhookRelayDeps): WebhookRelay {
  const clock = deps.clock ?? (() => new Date());
  const doFetch = deps.fetch ?? fetch;
  const batch = settings.batchSize ?? 10;
  const leaseMs = settings.timeoutMs + 5000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let stopped = true;
  // Aborts POSTs in flight on stop(); their rows are left to the lease (retried, not counted).
  let halt = new AbortController();

  const claim = async (): Promise<OutboxRow[]> => {
    const now = clock();
    return deps.db
      .updateTable("share_outbox")
      .set({ next_attempt_at: new Date(now.getTime() + leaseMs) })
      .where("share_id", "in", (eb) =>
        eb
          .selectFrom("share_outbox")
          .select("share_id")
          .where("status", "=", "queued")
          .where("next_attempt_at", "<=", now)
          .orderBy("next_attempt_at")
          .limit(batch)
          .forUpdate()
          .skipLocked(),
      )
      .where("status", "=", "queued")
      .returningAll()
      .execute();
  };

  const signer = webhookSigner(settings.secret);
  const post = async (row: OutboxRow): Promise<{ ok: true } | { ok: false; error: string } | { halted: true }> => {
    const raw = JSON.stringify(webhookBody(row));
    const at = clock();
    try {
      const res = await doFetch(settings.url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "webhook-id": row.share_id,
          "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
          "webhook-signature": signer.sign(row.share_id, at, raw),
          "Idempotency-Key": row.share_id,
        },
        body: raw,
        signal: AbortSignal.any([AbortSignal.timeout(settings.timeoutMs), halt.signal]),
        redirect: "manual",
      });
      await res.body?.cancel().catch(() => {});
      if (res.status >= 200 && res.status < 300) return { ok: true };
      return { ok: false, error: `HTTP ${res.status}` };
    } catch (err) {
      if (halt.signal.aborted) return { halted: true };
      const e = err as { name?: string; message?: string };
      return {
        ok: false,
        error: e.name === "TimeoutError" ? `timeout after ${settings.timeoutMs} ms` : `${e.name}: ${e.message}`,
      };
    }
  };

  const deliver = async (row: OutboxRow): Promise<void> => {
    const r = await post(row);
    if ("halted" in r) return;
    const attempts = row.attempts + 1;
    const now = clock();
    const q = deps.db.updateTable("share_outbox").where("share_id", "=", row.share_id).where("status", "=", "queued");
    if (r.ok) {
      await q.set({ status: "delivered", delivered_at: now, attempts, last_error: null }).execute();
      deps.events?.emit("share:delivered", { share_id: row.share_id, attempts });
    } else if (attempts >= settings.maxAttempts) {
      await q.set({ status: "failed", attempts, last_error: r.error }).execute();
      deps.events?.emit("share:failed", { share_id: row.share_id, attempts, error: r.error });
    } else {
      const delay = backoffMs(attempts, { baseMs: settings.retryBaseMs, maxMs: settings.retryMaxMs });
      await q.set({ attempts, last_error: r.error, next_attempt_at: new Date(now.getTime() + delay) }).execute();
      deps.events?.emit("share:retry", { share_id: row.share_id, attempts, delay_ms: delay, error: r.error });
    }
  };

  const tick = async (): Promise<number> => {
    const rows = await claim();
    await Promise.all(
      rows.map((row) =>
        deliver(row).catch((err) => deps.logger.error({ err, share_id: row.share_id }, "share:deliver-error")),
      ),
    );
    return rows.length;
  };

  const loop = () => {
    if (stopped) return;
    running = tick().catch((err) => {
      deps.logger.error({ err }, "share:poll-failed");
      return 0;
    });
    void running.then((n) => {
      // A full batch means more may be due: poll again at once.
      if (!stopped) timer = setTimeout(loop, n >= batch ? 0 : settings.pollMs);
    });
  };

  return {
    tick,
    start() {
      if (!stopped) return;
      stopped = false;
      halt = new AbortController();
      loop();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      halt.abort();
      await running;
    },
  };
}

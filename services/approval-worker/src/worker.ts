import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import {
  backoffMs,
  type Database,
  type Logger,
  type ReportPublisher,
  startWorkConsumer,
  type WorkConsumer,
} from "@nexus/platform";
import type { Kysely } from "kysely";
import { DEFAULT_ACTIONS } from "./actions/external-share.ts";
import type { ActionModule } from "./actions/types.ts";
import type { ApprovalWorkerOptions } from "./config.ts";
import { OutboxShareConnector } from "./connector/outbox.ts";
import type { ShareConnector } from "./connector/types.ts";
import { createWebhookRelay, type WebhookRelay } from "./connector/webhook-relay.ts";
import { type DecisionDeps, decisionLogger, failAfterRetries, processDecision } from "./decisions.ts";
import { deadLetter, parseDecision } from "./dlq.ts";
import { createWorkerEvents, type WorkerEvents } from "./events.ts";
import { createExpirySweeper, type ExpirySweeper } from "./expiry.ts";
import { type Notifier, natsNotifier } from "./notify.ts";

/**
 * The dependency bag of {@link createApprovalWorker} (kysely/trigger.dev style: explicit, no
 * container). Optional members have production defaults, so tests build the worker in-process
 * and replace only what they exercise.
 */
export interface ApprovalWorkerDeps {
  db: Kysely<Database>;
  /** JetStream client: the durable consumer and dead-lettering. */
  js: JetStreamClient;
  /** Core connection: CASE_ACTION notifications (when `notifier` is not given). */
  nc: NatsConnection;
  reports: ReportPublisher;
  /** Default: core NATS on `nexus.notify.<org>.<project>.case_action`. */
  notifier?: Notifier;
  /** Default: {@link OutboxShareConnector}. */
  connector?: ShareConnector;
  /** Runnable action types (default: `external_share.prepare` and every GREEN type, for policies that raise them to RED). */
  actions?: ActionModule[];
  logger: Logger;
  /** Default: `() => new Date()`. */
  clock?: () => Date;
  config: ApprovalWorkerOptions;
  /** Lifecycle events; one is created when absent (see {@link ApprovalWorker.events}). */
  events?: WorkerEvents;
}

/** A running (or startable) approval-worker. */
export interface ApprovalWorker {
  /** Typed lifecycle events (`ask:executed`, `decision:retry`, …) for logging and metrics. */
  readonly events: WorkerEvents;
  /**
   * Handles one decision message and settles it: ack (any final outcome), term (poison →
   * DLQ; retries exhausted → DLQ + `ask.execution_failed`), or nak with exponential backoff
   * (transient). Exposed for tests; `start()` feeds it from the durable consumer.
   */
  handle(msg: JsMsg, signal: AbortSignal): Promise<void>;
  /** Starts the durable consumer `approval-worker`, the expiry sweeper and (if configured) the webhook relay. */
  start(): Promise<void>;
  /**
   * Graceful stop (ARCHITECTURE.md invariant 8): stops pulling, lets in-flight decisions
   * finish for up to `graceMs`, naks the rest for another replica, then stops the sweeper and
   * relay. Does not close NATS or Postgres (the caller owns them).
   */
  stop(graceMs: number): Promise<void>;
  /** Decisions being handled right now. */
  inFlight(): number;
}

const errorText = (err: unknown): string => (err instanceof Error ? `${err.name}: ${err.message}` : String(err));

/**
 * Builds the approval-worker: consumes `DecisionMessage`s from the durable pull consumer
 * `approval-worker` on `NEXUS_APPROVALS` and drives each ask through `decisions.ts`; runs the
 * expiry sweeper (`expiry.ts`) and, when `config.webhook` is set, the webhook relay.
 */
export function createApprovalWorker(deps: ApprovalWorkerDeps): ApprovalWorker {
  const clock = deps.clock ?? (() => new Date());
  const events = deps.events ?? createWorkerEvents();
  const notifier = deps.notifier ?? natsNotifier(deps.nc);
  const cfg = deps.config;
  const d: DecisionDeps = {
    db: deps.db,
    reports: deps.reports,
    notifier,
    connector: deps.connector ?? new OutboxShareConnector(deps.db, clock),
    actions: deps.actions ?? DEFAULT_ACTIONS,
    events,
    clock,
  };
  const sweeper: ExpirySweeper | undefined =
    cfg.expirySweepMs > 0
      ? createExpirySweeper({
          db: deps.db,
          reports: deps.reports,
          notifier,
          logger: deps.logger,
          events,
          clock,
          intervalMs: cfg.expirySweepMs,
        })
      : undefined;
  const relay: WebhookRelay | undefined = cfg.webhook
    ? createWebhookRelay(cfg.webhook, { db: deps.db, logger: deps.logger, events, clock })
    : undefined;
  const pending = new Set<Promise<void>>();
  let consumer: WorkConsumer | undefined;

  const handle = async (msg: JsMsg, signal: AbortSignal): Promise<void> => {
    const parsed = parseDecision(msg);
    if (!parsed.ok) {
      // Poison: no retry can fix it. A failed DLQ publish throws and the consumer naks.
      await deadLetter(deps.js, msg, parsed.tenant, "poison", parsed.error, clock());
      msg.term(); // bare +TERM: nats-server < 2.10.4 ignores "+TERM <reason>" and redelivers; the reason is in the DLQ entry
      events.emit("decision:dead_lettered", { subject: msg.subject, reason: "poison", error: parsed.error });
      return;
    }
    const m = parsed.message;
    const logger = decisionLogger(deps.logger, m);
    try {
      const outcome = await processDecision(d, m, { logger, signal, redelivered: msg.info.deliveryCount > 1 });
      if (signal.aborted) return; // the consumer nak'ed it already
      if (outcome === "unknown_ask") {
        const error = "ASK_NOT_FOUND: no ask with this id and command_id for the tenant";
        await deadLetter(deps.js, msg, m.tenant, "poison", error, clock(), m.correlation_id);
        msg.term(); // bare +TERM: nats-server < 2.10.4 ignores "+TERM <reason>" and redelivers; the reason is in the DLQ entry
        events.emit("decision:dead_lettered", { subject: msg.subject, reason: "poison", error });
        return;
      }
      msg.ack();
      logger.debug({ outcome }, "decision:handled");
    } catch (err) {
      if (signal.aborted) return;
      const deliveries = msg.info.deliveryCount;
      if (deliveries >= cfg.maxRetries) {
        try {
          logger.error({ err, deliveries }, "decision:retries-exhausted");
          await failAfterRetries(d, m);
          await deadLetter(deps.js, msg, m.tenant, "retries_exhausted", errorText(err), clock(), m.correlation_id);
          msg.term(); // bare +TERM: nats-server < 2.10.4 ignores "+TERM <reason>" and redelivers; the reason is in the DLQ entry
          events.emit("decision:dead_lettered", {
            subject: msg.subject,
            reason: "retries_exhausted",
            error: errorText(err),
          });
          return;
        } catch (err2) {
          // Postgres or NATS still down: keep the message and try again later.
          logger.error({ err: err2 }, "decision:dead-letter-failed");
        }
      }
      const delay = backoffMs(deliveries, cfg.retryBaseMs, cfg.retryMaxMs);
      events.emit("decision:retry", { subject: msg.subject, deliveries, delay_ms: delay, err });
      msg.nak(delay);
    }
  };

  const tracked = (msg: JsMsg, signal: AbortSignal): Promise<void> => {
    const p = handle(msg, signal);
    pending.add(p);
    const done = () => void pending.delete(p);
    p.then(done, done);
    return p;
  };

  return {
    events,
    handle: tracked,
    async start() {
      if (consumer) return;
      consumer = await startWorkConsumer({
        js: deps.js,
        stream: STREAMS.approvals,
        consumer: CONSUMERS.approvalWorker,
        maxInFlight: cfg.maxInFlight ?? 16,
        logger: deps.logger,
        handle: tracked,
        retryDelayMs: cfg.retryBaseMs,
      });
      sweeper?.start();
      relay?.start();
    },
    async stop(graceMs) {
      await consumer?.stop(graceMs);
      consumer = undefined;
      // Aborted handlers stop at their next checkpoint; give them a moment before the caller closes the pools.
      await Promise.race([Promise.allSettled([...pending]), new Promise((r) => setTimeout(r, 2000))]);
      await Promise.all([sweeper?.stop(), relay?.stop()]);
    },
    inFlight: () => pending.size,
  };
}

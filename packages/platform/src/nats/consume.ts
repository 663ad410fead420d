import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "pino";

/** Options of {@link startWorkConsumer}. */
export interface WorkConsumerOptions {
  js: JetStreamClient;
  stream: string;
  /** Durable pull consumer name (provisioned beforehand). */
  consumer: string;
  /** How many messages one process handles at once (default 16). */
  maxInFlight?: number;
  logger: Logger;
  /**
   * Handles one message and settles it (ack / nak / term) itself. A throw is logged and the
   * message is nak'ed with `retryDelayMs` so it is redelivered.
   */
  handle(msg: JsMsg, signal: AbortSignal): Promise<void>;
  /** Redelivery delay after an unexpected throw, milliseconds (default 1000). */
  retryDelayMs?: number;
}

/** A running consumer; `stop()` drains it. */
export interface WorkConsumer {
  /** Messages being handled right now. */
  inFlight(): number;
  /**
   * Stops pulling, waits up to `graceMs` for in-flight messages to finish, then aborts the rest
   * and naks them so another replica takes them at once (ARCHITECTURE.md invariant 8).
   */
  stop(graceMs: number): Promise<void>;
}

/**
 * Runs a durable pull consumer as a competing consumer: any number of replicas may run it.
 * Messages are handled concurrently up to `maxInFlight`.
 */
export async function startWorkConsumer(o: WorkConsumerOptions): Promise<WorkConsumer> {
  const maxInFlight = o.maxInFlight ?? 16;
  const consumer = await o.js.consumers.get(o.stream, o.consumer);
  const messages: ConsumerMessages = await consumer.consume({ max_messages: maxInFlight });
  const active = new Map<JsMsg, AbortController>();
  let slotFreed: (() => void) | undefined;
  let stopping = false;

  const run = async (m: JsMsg) => {
    const ac = new AbortController();
    active.set(m, ac);
    try {
      await o.handle(m, ac.signal);
    } catch (err) {
      o.logger.error({ err, subject: m.subject, seq: m.seq }, "consumer:handler-threw");
      try {
        m.nak(o.retryDelayMs ?? 1000);
      } catch {}
    } finally {
      active.delete(m);
      slotFreed?.();
    }
  };

  const loop = (async () => {
    for await (const m of messages) {
      if (stopping) {
        m.nak();
        continue;
      }
      while (active.size >= maxInFlight) await new Promise<void>((r) => (slotFreed = r));
      void run(m);
    }
  })().catch((err) => o.logger.error({ err }, "consumer:loop-failed"));

  return {
    inFlight: () => active.size,
    async stop(graceMs: number) {
      stopping = true;
      await messages.close().catch(() => {});
      const deadline = Date.now() + graceMs;
      while (active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      for (const [m, ac] of active) {
        ac.abort(new Error("shutdown"));
        try {
          m.nak();
        } catch {}
      }
      await Promise.race([loop, new Promise((r) => setTimeout(r, 100))]);
    },
  };
}

/**
 * Exponential backoff with full jitter: `random(0, min(maxMs, baseMs * 2^(attempt-1)))`, at
 * least `baseMs / 2`. Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015).
 * @param attempt 1-based attempt number that just failed.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(Math.floor(baseMs / 2), Math.floor(random() * cap));
}

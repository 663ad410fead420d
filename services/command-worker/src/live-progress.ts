/**
 * Live progress of running commands (docs/contract.md `event: progress`): published on the core NATS
 * subject `nexus.progress.<org>.<project>` — not JetStream, so nothing is stored, replayed or
 * counted toward retention — and coalesced per command.
 */
import { type Causality, type CommandProgress, type ProgressEvent, subjects, type Tenant } from "@nexus/contracts";
import type { Logger } from "pino";

/** The narrow part of a NATS connection live progress needs (core publish, fire and forget). */
export interface ProgressPublisher {
  publish(subject: string, payload: string): void;
}

/** One command's live progress sink (what `HandlerContext.live` calls). */
export interface LiveProgress {
  push(p: Omit<CommandProgress, "command_id">): void;
  /** Publishes what is pending and stops the timer; later pushes are ignored. */
  close(): void;
}

/** Options of {@link createLiveProgress}. */
export interface LiveProgressOptions {
  nc: ProgressPublisher;
  /** `LLM_PROGRESS_INTERVAL_MS`: at most one message per this interval for one stage, ms. */
  intervalMs: number;
  logger: Logger;
  now?: () => Date;
}

/**
 * A coalescing {@link LiveProgress} for one command. Within one stage, pushes closer together
 * than `intervalMs` are merged (their `text_delta`s concatenated, the latest `percent` kept) and
 * published at the end of the interval; a push of another stage publishes the pending one at
 * once (so text never crosses stages). A stage's deltas therefore arrive complete and in
 * order; the rate is at most one message per interval plus one per stage change. Publishing
 * never throws into the handler.
 */
export function createLiveProgress(
  o: LiveProgressOptions,
  tenant: Tenant,
  commandId: string,
  causality: Causality,
): LiveProgress {
  const subject = subjects.progress(tenant);
  const now = o.now ?? (() => new Date());
  let pending: CommandProgress | undefined;
  let lastSent = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const send = () => {
    clearTimeout(timer);
    timer = undefined;
    if (!pending) return;
    const event: ProgressEvent = { progress: pending, causality, tenant, ts: now().toISOString() };
    pending = undefined;
    lastSent = Date.now();
    try {
      o.nc.publish(subject, JSON.stringify(event));
    } catch (err) {
      o.logger.debug({ err }, "progress:publish-failed");
    }
  };

  return {
    push(p) {
      if (closed) return;
      if (pending && pending.stage !== p.stage) send();
      const text = (pending?.text_delta ?? "") + (p.text_delta ?? "");
      const percent = p.percent ?? pending?.percent;
      pending = {
        command_id: commandId,
        stage: p.stage,
        ...(percent !== undefined ? { percent } : {}),
        ...(text ? { text_delta: text } : {}),
      };
      const wait = lastSent + o.intervalMs - Date.now();
      if (wait <= 0) send();
      else timer ??= setTimeout(send, wait);
    },
    close() {
      if (closed) return;
      send();
      closed = true;
    },
  };
}

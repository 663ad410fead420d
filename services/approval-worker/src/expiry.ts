import {
  type AskRow,
  appendHistory,
  askExpiredReport,
  cancelCommand,
  type Database,
  expireDueAsks,
  type Logger,
  markExpiryReported,
  type ReportPublisher,
  unreportedExpiredAsks,
} from "@nexus/platform";
import type { Kysely } from "kysely";
import { tenantOf } from "./decisions.ts";
import type { WorkerEvents } from "./events.ts";
import { caseActionNotification, type Notifier } from "./notify.ts";

/** Dependencies and settings of {@link createExpirySweeper}. */
export interface ExpirySweeperOptions {
  db: Kysely<Database>;
  reports: ReportPublisher;
  notifier: Notifier;
  logger: Logger;
  events?: WorkerEvents;
  clock?: () => Date;
  /** Period, milliseconds (`EXPIRY_SWEEP_MS`, default 1000). */
  intervalMs: number;
  /** Asks expired per transaction (default 100). */
  batchSize?: number;
  /**
   * An expired ask whose report is still unconfirmed this long after it expired is assumed
   * orphaned (its sweeper died between commit and publish) and re-published, milliseconds
   * (default 5000). The delay keeps a replica from re-publishing what another one is about to.
   */
  republishAfterMs?: number;
}

/** A running sweeper. */
export interface ExpirySweeper {
  /** One sweep. @returns how many asks this call expired. */
  tick(): Promise<number>;
  /** Sweeps at once (asks that fell due while no worker ran expire on start), then every `intervalMs`. */
  start(): void;
  /** Stops and waits for the sweep in progress. */
  stop(): Promise<void>;
}

/**
 * The expiry sweeper. Each tick, in one transaction: `expireDueAsks` (open and due →
 * `expired`; `FOR UPDATE SKIP LOCKED`, so exactly one replica expires each ask), the command →
 * `cancelled`, history `expired` (executor `"system"`). After the commit: `ask.expired`
 * (step `expired`, ts = expiry time, causality = the ask's own correlation id), the
 * EXPIRE/EXPIRED notification, then `markExpiryReported`. Expired asks still unreported after
 * `republishAfterMs` (a crash between commit and publish) are re-published; the report's
 * `Nats-Msg-Id` makes that idempotent.
 *
 * Expiry is not rejection and fails safe: an expired ask never executes (`decisions.ts`
 * refuses decisions on `expired` asks and on open asks past `expires_at`).
 */
export function createExpirySweeper(o: ExpirySweeperOptions): ExpirySweeper {
  const clock = o.clock ?? (() => new Date());
  const batch = o.batchSize ?? 100;
  const republishAfterMs = o.republishAfterMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = true;

  const report = async (row: AskRow): Promise<void> => {
    const t = tenantOf(row);
    await o.reports.publish({
      tenant: t,
      entityId: row.ask_id,
      step: "expired",
      report: askExpiredReport(row),
      causality: { correlation_id: row.correlation_id, command_id: row.command_id, ask_id: row.ask_id },
      ts: row.updated_at.toISOString(),
    });
    o.notifier.caseAction(t, caseActionNotification(row, "expired"));
    await markExpiryReported(o.db, row.ask_id);
  };

  const tick = async (): Promise<number> => {
    const now = clock();
    const expired = await o.db.transaction().execute(async (tx) => {
      const rows = await expireDueAsks(tx, now, batch);
      for (const r of rows) {
        const t = tenantOf(r);
        await cancelCommand(tx, t, r.command_id, now);
        await appendHistory(tx, t, {
          ask_id: r.ask_id,
          command_id: r.command_id,
          event: "expired",
          decision: null,
          executor_id: "system",
          note: null,
          correlation_id: r.correlation_id,
          details: { expires_at: r.expires_at.toISOString() },
        });
      }
      return rows;
    });
    for (const r of expired) {
      o.events?.emit("ask:expired", { tenant: tenantOf(r), ask_id: r.ask_id, command_id: r.command_id });
      // A failed publish leaves expiry_reported false: a later tick re-publishes it.
      await report(r).catch((err) => o.logger.warn({ err, ask_id: r.ask_id }, "ask:expired-report-failed"));
    }
    const cutoff = now.getTime() - republishAfterMs;
    const fresh = new Set(expired.map((r) => r.ask_id));
    for (const r of await unreportedExpiredAsks(o.db, batch)) {
      if (fresh.has(r.ask_id) || r.updated_at.getTime() > cutoff) continue;
      await report(r).catch((err) => o.logger.warn({ err, ask_id: r.ask_id }, "ask:expired-report-failed"));
    }
    return expired.length;
  };

  const loop = () => {
    if (stopped) return;
    const p = tick().catch((err) => {
      o.logger.error({ err }, "expiry:sweep-failed");
      return 0;
    });
    running = p;
    void p.then((n) => {
      // A full batch means more are due: sweep again at once.
      if (!stopped) timer = setTimeout(loop, n >= batch ? 0 : o.intervalMs);
    });
  };

  return {
    tick,
    start() {
      if (!stopped) return;
      stopped = false;
      loop();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

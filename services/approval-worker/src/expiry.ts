/**
 * The expiry sweeper. An ask expires by an entry in its register, like a decision: for each
 * open ask past `expires_at`, the sweeper appends an expiry entry with
 * `Nats-Expected-Last-Subject-Sequence` = the register's newest sequence. If a decision got
 * there first, the sequence check fails and the ask is not expired (the decision stands); if
 * the expiry gets there first, a late decision fails its check and is answered 409 ASK_EXPIRED.
 * JetStream orders the two, so a decision the gateway accepted is never overtaken by expiry,
 * and an expired ask never executes (invariant 2). Any number of sweepers may run: the same
 * check lets one win; the entry's `Nats-Msg-Id` dedupes identical ones. The approval-worker
 * applies the entry like any other (ask → expired, command → cancelled, `ask.expired`, EXPIRE).
 *
 * No transaction is held: the due asks are read with one query, each register write is a publish.
 */
import { AskEventMessage, STREAMS, subjects } from "@nexus/contracts";
import { askEventMsgId, type Database, dueOpenAsks, expiryEntry } from "@nexus/core";
import { type JetStreamPublisher, type LastMessageReader, publishGuarded } from "@nexus/messaging";
import type { Kysely } from "kysely";
import type { Logger } from "pino";

/** Dependencies and settings of {@link startExpirySweeper}. */
export interface ExpirySweeperOptions {
  db: Kysely<Database>;
  js: JetStreamPublisher;
  readLast: LastMessageReader;
  logger: Logger;
  now: () => Date;
  /** Period, ms (`EXPIRY_SWEEP_MS`). */
  intervalMs: number;
  /** Asks looked at per pass (default 100). */
  batchSize?: number;
  publishTimeoutMs?: number;
  connected?: () => boolean;
}

/** A sweeper. */
export interface ExpirySweeper {
  /** One pass. @returns how many expiry entries this call wrote. */
  tick(): Promise<number>;
  /** Sweeps at once (asks that fell due while no worker ran), then every `intervalMs`. */
  start(): void;
  stop(): Promise<void>;
}

/** Creates the sweeper (see the module doc); `start()` runs it. */
export function createExpirySweeper(o: ExpirySweeperOptions): ExpirySweeper {
  const batch = o.batchSize ?? 100;
  let stopped = true;
  let halted = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;

  const tick = async (): Promise<number> => {
    const now = o.now();
    let written = 0;
    for (const row of await dueOpenAsks(o.db, now, batch)) {
      if (halted) break;
      const t = { org_id: row.org_id, project_id: row.project_id };
      const subject = subjects.approval(t, row.ask_id);
      const last = await o.readLast(STREAMS.approvals, subject);
      const register = last ? AskEventMessage.parse(JSON.parse(last.body)) : null;
      if (register && register.outcome !== "pending") continue; // final already; the worker applies it
      const entry = expiryEntry(row, register, now);
      const out = await publishGuarded(
        o.js,
        subject,
        JSON.stringify(entry),
        {
          tenant: t,
          msgId: askEventMsgId(t, row.ask_id, "expiry", entry.decisions.length),
          correlationId: row.correlation_id,
        },
        {
          expectLastSubjectSequence: last?.seq ?? 0,
          ...(o.publishTimeoutMs ? { timeoutMs: o.publishTimeoutMs } : {}),
          ...(o.connected ? { connected: o.connected } : {}),
        },
      );
      if (out.kind === "stored" && !out.duplicate) written++;
      else if (out.kind === "refused" || out.kind === "unconfirmed")
        o.logger.warn({ err: out.cause, ask_id: row.ask_id }, "expiry:write-failed");
    }
    return written;
  };

  const loop = () => {
    if (stopped) return;
    running = tick().catch((err) => {
      o.logger.error({ err }, "expiry:sweep-failed");
      return 0;
    });
    void running.then((n) => {
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
      halted = true;
      clearTimeout(timer);
      await running;
    },
  };
}

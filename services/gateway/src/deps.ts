import { splitList } from "@nexus/contracts";
import type { Database } from "@nexus/core";
import type { DeadLetterStore, JetStreamPublisher, LastMessageReader, StreamPurger } from "@nexus/messaging";
import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { GatewayConfig } from "./config.ts";

/**
 * The steps of the write path between which a failure can be injected (tests and drills): a
 * test's {@link FaultHook} may throw there, or the process may kill itself there
 * (`FAULT_INJECT_CRASH_AT`).
 */
export type FaultStep =
  | "accept:before-command-publish"
  | "accept:after-command-publish"
  | "decide:before-register-write"
  | "decide:after-register-write"
  | "decide:after-report-publish"
  | "settings:in-transaction"
  | "settings:before-commit"
  | "settings:after-commit"
  | "settings:after-publish"
  | "purge:after-db"
  | "purge:after-jetstream";

/**
 * Called at each {@link FaultStep}; a throw there is what the test injects. Steps inside the
 * settings transaction get it (`trx`), so a test can kill that very connection.
 */
export type FaultHook = (step: FaultStep, ctx?: { trx?: Transaction<Database> }) => void | Promise<void>;

/** What the gateway's routes depend on: an explicit bag, no singletons. */
export interface GatewayDeps {
  config: GatewayConfig;
  db: Kysely<Database>;
  /** Publishes to JetStream (a `JetStreamClient`, or a test's wrapper that loses PubAcks). */
  js: JetStreamPublisher;
  /** Reads a register's newest entry (a command id's stored command, an ask's newest decision). */
  readLast: LastMessageReader;
  /** Purges a tenant's messages from a JetStream stream (the tenant purge). */
  purge: StreamPurger;
  /** The dead-letter stream, for the admin API (list, read, drop; requeues are published with `js`). */
  deadLetters: DeadLetterStore;
  /** Whether NATS is connected right now (a publish while disconnected is refused, not buffered). */
  natsConnected: () => boolean;
  /** For `/ready`: NATS answers a round trip. */
  natsReady: () => Promise<boolean>;
  logger: Logger;
  metrics: Registry;
  /** The clock; tests may pass a fixed one. */
  now: () => Date;
  /** Fault injection (tests); absent in production. */
  faults?: FaultHook;
}

/** Runs the fault hook of `step`, if any. */
export async function faultAt(
  deps: Pick<GatewayDeps, "faults">,
  step: FaultStep,
  ctx?: { trx?: Transaction<Database> },
): Promise<void> {
  if (deps.faults) await deps.faults(step, ctx);
}

/** A {@link FaultHook} that SIGKILLs the process at the listed steps (`FAULT_INJECT_CRASH_AT`). */
export function crashAt(steps: string): FaultHook | undefined {
  const set = new Set(splitList(steps));
  if (set.size === 0) return undefined;
  return (step) => {
    if (set.has(step)) process.kill(process.pid, "SIGKILL");
  };
}

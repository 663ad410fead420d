/**
 * What the command-worker's in-process tests share: the job dependencies on the rig's NATS and
 * Postgres, with the offline LLM, the outbox share connector and the given handlers.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Database } from "@nexus/core";
import { type CommandHandler, OFFLINE_LLM, OutboxShareConnector } from "@nexus/handlers";
import type { Kysely } from "kysely";
import type { CommandJobDeps } from "../src/jobs.ts";

/** Job dependencies for tests; `extra` overrides any of them. */
export function testDeps(
  db: Kysely<Database>,
  js: JetStreamClient,
  handlers: readonly CommandHandler[],
  extra: Partial<CommandJobDeps> = {},
): CommandJobDeps {
  return {
    db,
    js,
    llm: OFFLINE_LLM,
    share: new OutboxShareConnector(db),
    now: () => new Date(),
    handlers,
    config: { ASK_TTL_SECONDS: 3600, PUBLISH_TIMEOUT_MS: 5000, FAULT_INJECT_HANDLER_DELAY_MS: 0 },
    ...extra,
  };
}

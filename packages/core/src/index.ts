/**
 * `@nexus/core`: the domain without HTTP or NATS. Every state transition (commands, asks,
 * settings) written once as `(tx, args) → { row, effects }`, the risk policy, the report
 * builders, the message-id scheme, the kysely schema, queries and migrations.
 */
export * from "./archive/index.ts";
export * from "./asks.ts";
export * from "./commands.ts";
export * from "./credentials.ts";
export * from "./db/database.ts";
export * from "./db/group-commit.ts";
export type * from "./db/schema.ts";
export * from "./effects.ts";
export * from "./errors.ts";
export * from "./hash.ts";
export * from "./history.ts";
export * from "./ids.ts";
export * from "./llm.ts";
export * from "./notifications.ts";
export * from "./outbox.ts";
export * from "./reports.ts";
export * from "./retry.ts";
export * from "./risk.ts";
export * from "./settings.ts";
export * from "./snapshot.ts";

/**
 * `@nexus/messaging`: NATS connect, the JetStream topology, typed publishing with honest
 * failure classification, effects publishing, register reads, and `runWorker()`.
 */
export * from "./connect.ts";
export * from "./dead-letters.ts";
export * from "./errors.ts";
export * from "./local-server.ts";
export * from "./permissions.ts";
export * from "./publish.ts";
export * from "./report-log.ts";
export * from "./topology.ts";
export * from "./tracing.ts";
export * from "./worker.ts";

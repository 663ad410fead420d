/**
 * `@nexus/runtime`: what a service's `main.ts` composes: configuration (parsed once), the
 * logger, start-up (NATS, topology check, Postgres, metrics), worker event logging and
 * metrics, and the one bounded shutdown.
 */
export * from "./config.ts";
export * from "./listen.ts";
export * from "./logger.ts";
export * from "./metrics.ts";
export * from "./provision.ts";
export * from "./service.ts";
export * from "./shutdown.ts";
export * from "./worker-events.ts";

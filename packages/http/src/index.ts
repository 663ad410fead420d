/**
 * `@nexus/http`: the Fastify app factory with the zod type provider, authentication and
 * tenancy, the standard error body for every failure, and the health routes.
 */
export * from "./app.ts";
export * from "./auth.ts";
export * from "./errors.ts";
export * from "./hardening.ts";
export * from "./health.ts";
export * from "./request-log.ts";

/**
 * Imported first by `main.ts`: starts OpenTelemetry (when the `OTEL_*` variables turn it on)
 * before `pg` and `fastify` are loaded, so their instrumentations apply (see `startTracing`).
 */
import { startTracing } from "@nexus/runtime/tracing";

export const tracing = startTracing("gateway", process.env);

/**
 * OpenTelemetry tracing, configured by the standard `OTEL_*` variables and off unless an
 * exporter is named (`OTEL_TRACES_EXPORTER`) or an OTLP endpoint is set
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true`
 * turns it off whatever else is set.
 *
 * When on, the OpenTelemetry Node SDK (`@opentelemetry/sdk-node`) exports spans (OTLP over
 * HTTP/protobuf by default; `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` picks `http/json` or `grpc`)
 * from:
 * - `@fastify/otel`: one SERVER span per HTTP request (not `/health`, `/ready`, `/metrics`),
 *   continuing an incoming W3C `traceparent`;
 * - `@opentelemetry/instrumentation-pg`: a span per Postgres query inside a traced request or
 *   job (`requireParentSpan`: the pollers' background queries make no traces of their own);
 * - `@nexus/messaging`: a PRODUCER span per JetStream publish (its context in the message's
 *   `traceparent` header) and a CONSUMER span per message a worker handles.
 *
 * This module must be imported before anything that loads `pg` or `fastify`, so a service's
 * `main.ts` imports its `tracing.ts` first (ES modules run in import order; the instrumentation
 * patches `pg` when it is first loaded).
 */
import { FastifyOtelInstrumentation } from "@fastify/otel";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { NodeSDK } from "@opentelemetry/sdk-node";

/**
 * The standard OpenTelemetry variables that matter here (the SDK reads them itself; listed for
 * `.env.example` and the docs). Source: OpenTelemetry "SDK environment variables" and the OTLP
 * exporter specification.
 */
export const OTEL_VARIABLES: { name: string; default: string; meaning: string }[] = [
  {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: "",
    meaning: "OTLP collector base URL (e.g. http://otel-collector:4318); setting it turns tracing on",
  },
  { name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default: "", meaning: "full traces URL, instead of the base URL" },
  { name: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", default: "http/protobuf", meaning: "http/protobuf, http/json or grpc" },
  {
    name: "OTEL_EXPORTER_OTLP_HEADERS",
    default: "",
    meaning: "headers for the collector (key=value,…), e.g. an API key",
  },
  {
    name: "OTEL_TRACES_EXPORTER",
    default: "",
    meaning: "otlp, zipkin or none; a value other than none turns tracing on",
  },
  { name: "OTEL_SERVICE_NAME", default: "the service's name", meaning: "service.name of the spans" },
  {
    name: "OTEL_RESOURCE_ATTRIBUTES",
    default: "",
    meaning: "more resource attributes (deployment.environment=prod,…)",
  },
  { name: "OTEL_TRACES_SAMPLER", default: "parentbased_always_on", meaning: "e.g. parentbased_traceidratio" },
  { name: "OTEL_TRACES_SAMPLER_ARG", default: "", meaning: "the sampler's argument (a ratio such as 0.1)" },
  { name: "OTEL_BSP_SCHEDULE_DELAY", default: "5000", meaning: "how often buffered spans are exported, ms" },
  { name: "OTEL_SDK_DISABLED", default: "false", meaning: "true turns tracing off whatever else is set" },
];

/** What {@link startTracing} returns. */
export interface Tracing {
  /** Whether spans are recorded and exported. */
  enabled: boolean;
  /** Flushes the spans still buffered and stops exporting (call last on shutdown). Never throws. */
  shutdown(): Promise<void>;
}

/**
 * Whether `env` turns tracing on (see the module doc).
 * @param env the process environment (`OTEL_*` variables).
 */
export function tracingEnabled(env: Record<string, string | undefined>): boolean {
  if ((env.OTEL_SDK_DISABLED ?? "").toLowerCase() === "true") return false;
  const exporter = (env.OTEL_TRACES_EXPORTER ?? "").trim().toLowerCase();
  if (exporter === "none") return false;
  return exporter !== "" || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Request paths never traced (probes and scrapes). */
const UNTRACED_PATHS = new Set(["/health", "/ready", "/metrics"]);

/**
 * Starts the OpenTelemetry SDK for `service` when `env` turns tracing on; otherwise does
 * nothing (the OpenTelemetry API stays a no-op). The service name is `OTEL_SERVICE_NAME` when
 * set, else `service`. Metrics and logs are not exported through OpenTelemetry (metrics are
 * Prometheus' `/metrics`; logs are JSON lines carrying `trace_id`).
 */
export function startTracing(service: string, env: Record<string, string | undefined>): Tracing {
  if (!tracingEnabled(env)) return { enabled: false, shutdown: async () => {} };
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || service,
    instrumentations: [
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        ignorePaths: (o: { url: string }) => UNTRACED_PATHS.has(o.url.split("?")[0] ?? ""),
      }),
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
    ],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return {
    enabled: true,
    shutdown: () => sdk.shutdown().catch(() => {}),
  };
}

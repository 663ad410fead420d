import { z } from "zod";

/** A boolean env var: `true`/`1` or `false`/`0` (default false). */
export const envBool = z
  .enum(["true", "false", "1", "0", ""])
  .default("false")
  .transform((v) => v === "true" || v === "1");

/**
 * Settings every service shares. Units are in the names; defaults are stated here and in the
 * README table. Parsed once in a service's `main.ts`; everything below receives options.
 */
export const BaseConfig = z.object({
  /** NATS server URL(s), comma-separated (`nats://user:password@host:4222` is accepted too). */
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  /** This service's NATS user and password (each service has its own; see README "Security"). */
  NATS_USER: z.string().optional(),
  NATS_PASSWORD: z.string().optional(),
  /** …or a NATS token, */
  NATS_TOKEN: z.string().optional(),
  /** …or a `.creds` file (decentralised auth: user JWT + nkey seed). */
  NATS_CREDS: z.string().optional(),
  /** TLS: CA to verify the server; client certificate and key for mutual TLS. */
  NATS_TLS_CA_FILE: z.string().optional(),
  NATS_TLS_CERT_FILE: z.string().optional(),
  NATS_TLS_KEY_FILE: z.string().optional(),
  /** Postgres connection string. */
  DATABASE_URL: z.string().default("postgres://postgres:postgres@127.0.0.1:5432/nexus"),
  /** pino level: fatal, error, warn, info, debug, trace, silent. */
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** Pretty, human-readable logs (pino-pretty) instead of JSON lines. */
  LOG_PRETTY: envBool,
  /** Interface HTTP servers bind to. */
  HOST: z.string().default("127.0.0.1"),
  /** Per tenant, how many reports the report stream keeps (max msgs per subject). */
  STREAM_EVENT_KEEP: z.coerce.number().int().min(10).max(1_000_000).default(2000),
  /** JetStream replicas for every stream (1 on one server, 3 on a cluster). */
  STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  /** JetStream storage: file or memory. */
  STREAM_STORAGE: z.enum(["file", "memory"]).default("file"),
  /** Max age of commands and decisions in their streams, seconds (7 d). */
  WORK_MAX_AGE_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .default(7 * 24 * 3600),
  /** JetStream duplicate window, milliseconds (2 min). */
  DUPLICATE_WINDOW_MS: z.coerce.number().int().min(1000).default(120_000),
  /**
   * Ack wait of the durable work consumers, milliseconds (10 s): a killed worker's jobs are
   * redelivered within it. Jobs that run longer stay theirs: workers send in-progress acks
   * every third of it.
   */
  CONSUMER_ACK_WAIT_MS: z.coerce.number().int().min(500).default(10_000),
  /** How long a service waits for in-flight work and connections on shutdown, milliseconds. */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(100).default(10_000),
  /** Provision the JetStream topology at start-up instead of only checking it. */
  PROVISION_ON_START: envBool,
  /** Postgres connections this process may hold (see docs/operations.md for the arithmetic). */
  PG_POOL_MAX: z.coerce.number().int().min(1).max(500).default(10),
  /** How long a query waits for a pooled connection before failing as "Postgres unavailable", ms. */
  PG_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(50).default(2000),
  /** Server-side statement timeout (the client gives up one second later), ms; 0 = none. */
  PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(5000),
});
export type BaseConfig = z.infer<typeof BaseConfig>;

/** Error thrown by {@link parseConfig}: names every invalid variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Parses `env` with `schema`, turning empty strings into "unset" so that `FOO=` means default.
 * @throws {ConfigError} listing every invalid variable and why.
 */
export function parseConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const r = schema.safeParse(cleaned);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n");
    throw new ConfigError(`invalid configuration:\n${lines}`);
  }
  return r.data;
}

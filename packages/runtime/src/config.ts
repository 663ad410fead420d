import { z } from "zod";

/** A boolean env var: `true`/`1` or `false`/`0` (default false). */
export const envBool = z
  .enum(["true", "false", "1", "0", ""])
  .default("false")
  .transform((v) => v === "true" || v === "1");

const maxBytes = (d: number) => z.coerce.number().int().min(-1).default(d);
const discard = (d: "old" | "new") => z.enum(["old", "new"]).default(d);

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
  /** Postgres connections this process may hold (see deploy/README.md "Postgres connections" for the arithmetic). */
  PG_POOL_MAX: z.coerce.number().int().min(1).max(500).default(10),
  /** How long a query waits for a pooled connection before failing as "Postgres unavailable", ms. */
  PG_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(50).default(2000),
  /** Server-side statement timeout (the client gives up one second later), ms; 0 = none. */
  PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(5000),
  /**
   * `/ready` answers 503 only once a readiness check has failed for this long, ms: a NATS or
   * Postgres blip shorter than this does not take every pod out of its Service at once.
   * 0 = at the first failure.
   */
  READY_GRACE_MS: z.coerce.number().int().min(0).default(10_000),
  /**
   * How provisioning treats a work consumer (`command-worker`, `approval-worker`) that is
   * missing while its stream holds messages: `refuse` (fail and say how to choose; default),
   * `new` (only messages published from now on), `all` (every stored message again),
   * `seq:<n>` (from stream sequence n) or `time:<ISO 8601>` (from that time). Never silently
   * from the start of a seven-day stream.
   */
  PROVISION_CONSUMER_START: z
    .string()
    .regex(/^(refuse|new|all|seq:[1-9][0-9]*|time:.+)$/, "refuse, new, all, seq:<n> or time:<ISO 8601>")
    .default("refuse"),
  /*
   * Byte limit (`max_bytes`; -1 = unlimited) and discard policy of each stream. The defaults sum
   * to 6.5 GiB, below the 10 GB file store of deploy/nats. Work streams discard `new`: when full,
   * a publish is refused (503, nothing stored) rather than an unprocessed command or decision
   * dropped. Reports (always `old`: per-tenant retention drops the oldest), dead letters and
   * notifications lose their oldest first. An alert fires at 80 % (deploy/prometheus/alerts.yml).
   */
  /** NEXUS_COMMANDS byte limit (1 GiB). */
  STREAM_MAX_BYTES_COMMANDS: maxBytes(1024 ** 3),
  /** NEXUS_COMMANDS when full: `new` refuses publishes (default), `old` drops the oldest. */
  STREAM_DISCARD_COMMANDS: discard("new"),
  /** NEXUS_APPROVALS byte limit (256 MiB). */
  STREAM_MAX_BYTES_APPROVALS: maxBytes(256 * 1024 ** 2),
  /** NEXUS_APPROVALS when full (`new`). */
  STREAM_DISCARD_APPROVALS: discard("new"),
  /** NEXUS_REPORTS byte limit (4 GiB); the oldest reports go first. */
  STREAM_MAX_BYTES_REPORTS: maxBytes(4 * 1024 ** 3),
  /** NEXUS_DLQ byte limit (256 MiB). */
  STREAM_MAX_BYTES_DLQ: maxBytes(256 * 1024 ** 2),
  /** NEXUS_DLQ when full (`old`). */
  STREAM_DISCARD_DLQ: discard("old"),
  /** NEXUS_NOTIFY byte limit (1 GiB). */
  STREAM_MAX_BYTES_NOTIFY: maxBytes(1024 ** 3),
  /** NEXUS_NOTIFY when full (`old`). */
  STREAM_DISCARD_NOTIFY: discard("old"),
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

/** A comma-separated list of failure codes (error codes such as `RETRIES_EXHAUSTED`); `none` for none. */
const codeList = (d: string) =>
  z
    .string()
    .default(d)
    .transform((s) =>
      s.trim().toLowerCase() === "none"
        ? []
        : s
            .split(",")
            .map((x) => x.trim())
            .filter(Boolean),
    )
    .pipe(z.array(z.string().regex(/^[A-Z][A-Z0-9_]*$/, "UPPER_SNAKE error codes")));

/**
 * Dead-letter triage and consumer health settings of the two workers (README "Dead letters").
 * A failure code may be in one list only; a code in none is held.
 */
export const WorkerTriageConfig = z.object({
  /** Codes whose dead letters run again by themselves after `AUTO_REQUEUE_DELAY_MS` (doubling each time). */
  AUTO_REQUEUE_FAILURE_CODES: codeList("RETRIES_EXHAUSTED"),
  /** Codes whose dead letters wait for an operator (`pnpm dlq`, the admin API). */
  AUTO_HOLD_FAILURE_CODES: codeList("IDEMPOTENCY_CONFLICT,ASK_NOT_FOUND,VALIDATION_FAILED"),
  /** Codes whose dead letters wait for an operator and fire the DeadLetterAlarm alert. */
  AUTO_ALARM_FAILURE_CODES: codeList("POISON_MESSAGE"),
  /** Delay before the first automatic requeue, ms (1 min); the n-th waits 2^(n−1) times as long. */
  AUTO_REQUEUE_DELAY_MS: z.coerce.number().int().min(0).default(60_000),
  /** Automatic requeues of one message at most; its next failure is an alarm. */
  AUTO_REQUEUE_MAX: z.coerce.number().int().min(0).max(100).default(3),
  /**
   * The worker reports itself not ready (`pull_stalled`) when messages are pending on its
   * consumer, it has free slots, and nothing was delivered for this long, ms.
   */
  CONSUMER_STALL_MS: z.coerce.number().int().min(1000).default(30_000),
});
export type WorkerTriageConfig = z.infer<typeof WorkerTriageConfig>;

/**
 * The dead-letter triage a worker's configuration names.
 * @throws {ConfigError} when a code is in more than one list.
 */
export function triageOf(c: WorkerTriageConfig): {
  requeue: Set<string>;
  hold: Set<string>;
  alarm: Set<string>;
  requeueDelayMs: number;
  requeueMax: number;
} {
  const lists = {
    AUTO_REQUEUE_FAILURE_CODES: c.AUTO_REQUEUE_FAILURE_CODES,
    AUTO_HOLD_FAILURE_CODES: c.AUTO_HOLD_FAILURE_CODES,
    AUTO_ALARM_FAILURE_CODES: c.AUTO_ALARM_FAILURE_CODES,
  };
  const seen = new Map<string, string>();
  for (const [name, codes] of Object.entries(lists))
    for (const code of codes) {
      const other = seen.get(code);
      if (other) throw new ConfigError(`invalid configuration:\n  ${name}: ${code} is also in ${other}`);
      seen.set(code, name);
    }
  return {
    requeue: new Set(c.AUTO_REQUEUE_FAILURE_CODES),
    hold: new Set(c.AUTO_HOLD_FAILURE_CODES),
    alarm: new Set(c.AUTO_ALARM_FAILURE_CODES),
    requeueDelayMs: c.AUTO_REQUEUE_DELAY_MS,
    requeueMax: c.AUTO_REQUEUE_MAX,
  };
}

/** Settings of `wait-provisioned` (the Kubernetes init container of the services). */
export const WaitProvisionedConfig = BaseConfig.extend({
  /** How long it waits for migrations and topology before it gives up (exit 1), ms. */
  WAIT_PROVISIONED_TIMEOUT_MS: z.coerce.number().int().min(1000).default(600_000),
});

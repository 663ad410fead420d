import { redactUrl } from "@nexus/contracts";
import { type Logger, pino } from "pino";

export type { Logger } from "pino";

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Service name, bound as `service`. */
  service: string;
  level?: string;
  /** Human-readable output via pino-pretty (dev); JSON lines otherwise. */
  pretty?: boolean;
}

/** Field names redacted from every log line: credentials never reach logs. */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers['x-api-key']",
  "req.headers.cookie",
  "headers.authorization",
  "headers['x-api-key']",
  "token",
  "api_key",
];

/**
 * A log line's fields with credentials in URLs redacted: any top-level string field holding a
 * `?token=` / `?api_key=` / `?ticket=` query (an access log's `url`, a proxy's `source`, an
 * error message quoting a URL) — whoever wrote the line, our code or a library's.
 */
export function redactLogFields(obj: Record<string, unknown>): Record<string, unknown> {
  for (const k in obj) {
    const v = obj[k];
    if (typeof v === "string" && v.includes("=")) {
      const r = redactUrl(v);
      if (r !== v) obj[k] = r;
    }
  }
  return obj;
}

/**
 * The root logger of a service. Child loggers bind `tenant`, `command_id`, `ask_id` and
 * `correlation_id` (see {@link bindContext}).
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options = {
    name: opts.service,
    level: opts.level ?? "info",
    base: { service: opts.service },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    formatters: { log: redactLogFields },
    ...(opts.pretty
      ? {
          transport: {
            target: "pino-pretty",
            options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" },
          },
        }
      : {}),
  } satisfies pino.LoggerOptions;
  if (opts.pretty) return pino(options);
  // Buffered, asynchronous writes (pino's recommendation for throughput): one write syscall per
  // 4 KiB or per 100 ms instead of one per line; flushed synchronously when the process exits.
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  setInterval(() => dest.flush(), 100).unref();
  process.once("exit", () => {
    try {
      dest.flushSync();
    } catch {}
  });
  return pino(options, dest);
}

/** The ids a log line about one piece of work carries. */
export interface LogContext {
  org_id?: string;
  project_id?: string;
  command_id?: string;
  ask_id?: string;
  correlation_id?: string;
}

/** A child logger bound to the given ids (undefined ones are left out). */
export function bindContext(logger: Logger, ctx: LogContext): Logger {
  return logger.child(Object.fromEntries(Object.entries(ctx).filter(([, v]) => v !== undefined)));
}

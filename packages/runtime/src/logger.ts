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
 * The root logger of a service. Child loggers bind `tenant`, `command_id`, `ask_id` and
 * `correlation_id` (see {@link bindContext}).
 */
export function createLogger(opts: LoggerOptions): Logger {
  return pino({
    name: opts.service,
    level: opts.level ?? "info",
    base: { service: opts.service },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    ...(opts.pretty
      ? {
          transport: {
            target: "pino-pretty",
            options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" },
          },
        }
      : {}),
  });
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

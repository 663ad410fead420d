/**
 * A request's logger (`req.log`) that creates its pino child only when the request writes a line
 * of its own. Fields bound during the request ({@link bindRequestLog}: request id, trace id,
 * tenant, command id) are collected in a plain object meanwhile; the access line at the end is
 * written by the parent with those fields inline ({@link writeRequestLine}). Most requests write
 * nothing but the access line, so they create no child logger at all: pino's `child()`
 * serialises its bindings, which cost about a tenth of the gateway's CPU per accepted command
 * when every binding made a child (`pnpm bench --profile`).
 */
import type { FastifyBaseLogger, FastifyRequest } from "fastify";
import type { Bindings, ChildLoggerOptions, Level, LevelWithSilentOrString, Logger } from "pino";

type LogFn = Logger["info"];

/** A Fastify-compatible logger whose pino child is created on first use (see the module doc). */
export class RequestLogger {
  private real: FastifyBaseLogger | undefined;
  private readonly parent: FastifyBaseLogger;
  private readonly opts: ChildLoggerOptions | undefined;
  private readonly fields: Bindings;
  private readonly bound = new Set<string>();

  /**
   * @param parent the service's logger (pino)
   * @param fields the first bindings (Fastify's request id)
   */
  constructor(parent: FastifyBaseLogger, fields: Bindings, opts?: ChildLoggerOptions) {
    this.parent = parent;
    this.opts = opts;
    this.fields = { ...fields };
    for (const k of Object.keys(fields)) this.bound.add(k);
  }

  /** Adds `fields` to every later line; a field already bound keeps its first value. */
  bind(fields: Record<string, string | undefined>): void {
    let fresh: Bindings | undefined;
    for (const k in fields) {
      const v = fields[k];
      if (v === undefined || this.bound.has(k)) continue;
      this.bound.add(k);
      fresh ??= {};
      fresh[k] = v;
    }
    if (!fresh) return;
    if (this.real) this.real = this.real.child(fresh);
    else Object.assign(this.fields, fresh);
  }

  /** Writes one info line with `obj` and every bound field, creating no child when none exists. */
  infoWith(obj: Record<string, unknown>, msg: string): void {
    if (this.real) this.real.info(obj, msg);
    else if (this.enabled("info")) this.parent.info({ ...this.fields, ...obj }, msg);
  }

  private get logger(): FastifyBaseLogger {
    this.real ??= this.parent.child(this.fields, this.opts);
    return this.real;
  }

  private enabled(level: Level): boolean {
    const p = this.parent as Partial<Pick<Logger, "isLevelEnabled">>;
    return p.isLevelEnabled ? p.isLevelEnabled(level) : true;
  }

  private write(level: Level, args: unknown[]): void {
    if (!this.enabled(level)) return;
    (this.logger[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): LevelWithSilentOrString {
    return (this.real ?? this.parent).level;
  }
  set level(level: LevelWithSilentOrString) {
    this.logger.level = level;
  }
  readonly fatal: LogFn = (...a: unknown[]) => this.write("fatal", a);
  readonly error: LogFn = (...a: unknown[]) => this.write("error", a);
  readonly warn: LogFn = (...a: unknown[]) => this.write("warn", a);
  readonly info: LogFn = (...a: unknown[]) => this.write("info", a);
  readonly debug: LogFn = (...a: unknown[]) => this.write("debug", a);
  readonly trace: LogFn = (...a: unknown[]) => this.write("trace", a);
  readonly silent: LogFn = () => {};
  child(bindings: Bindings, opts?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger.child(bindings, opts);
  }
}

/** Fastify's `childLoggerFactory`: every request gets a {@link RequestLogger}. */
export function requestLoggerFactory(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  opts: ChildLoggerOptions,
): FastifyBaseLogger {
  return new RequestLogger(logger, bindings, opts) as unknown as FastifyBaseLogger;
}

/**
 * Binds `fields` to the request's logger (`req.log`), so every later line of the request
 * carries them (tenant, correlation id, command or ask id). Undefined values are left out;
 * a field already bound is not bound twice.
 */
export function bindRequestLog(req: FastifyRequest, fields: Record<string, string | undefined>): void {
  const log = req.log as unknown;
  if (log instanceof RequestLogger) {
    log.bind(fields);
    return;
  }
  // A logger set by someone else: bind with a child, as pino does.
  const fresh = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
  if (Object.keys(fresh).length > 0) req.log = req.log.child(fresh);
}

/** Writes the request's access line (or any one-off info line) with every bound field. */
export function writeRequestLine(req: FastifyRequest, obj: Record<string, unknown>, msg: string): void {
  const log = req.log as unknown;
  if (log instanceof RequestLogger) log.infoWith(obj, msg);
  else req.log.info(obj, msg);
}

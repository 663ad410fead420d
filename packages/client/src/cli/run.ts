/**
 * The `nexus` command-line client, built on the SDK.
 *
 * Arguments are parsed with `node:util` `parseArgs` rather than a framework such as commander:
 * it is part of Node (no dependency added to a package that browsers also install), strict
 * mode rejects unknown options and missing values with typed error codes (mapped to exit
 * code 2 here), and the eight commands are few enough that help text written by hand stays
 * readable.
 *
 * Exit codes: 0 ok; 1 an API or stream error (its code and message on stderr); 2 usage.
 */
import { type ParseArgsConfig, parseArgs } from "node:util";
import type { ClientAuth } from "../auth.ts";
import { createClient, type NexusClient } from "../client.ts";
import { isNexusApiError } from "../errors.ts";
import type { StreamEvent } from "../stream.ts";
import { deadLetterTable, prettyReport, prettySnapshot } from "./format.ts";

/** What {@link run} needs from its process: environment, output, and a stop signal. */
export interface CliIo {
  env: Record<string, string | undefined>;
  out(line: string): void;
  err(line: string): void;
  /** Aborted on SIGINT/SIGTERM: long-running commands (watch, send --wait) end cleanly. */
  signal: AbortSignal;
}

/** A wrong invocation: printed with the usage, exit code 2. */
class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

const GLOBAL: Options = {
  url: { type: "string" },
  org: { type: "string" },
  project: { type: "string" },
  token: { type: "string" },
  "api-key": { type: "string" },
  user: { type: "string" },
  roles: { type: "string" },
  help: { type: "boolean", short: "h" },
};

interface CommandSpec {
  usage: string;
  summary: string;
  options: Options;
  /** Allowed number of positionals after the command name. */
  args: [min: number, max: number];
}

const COMMANDS: Record<string, CommandSpec> = {
  send: {
    usage:
      "send <type> [--params <json>] [--context <json>] [--command-id <id>] [--correlation-id <id>] [--wait] [--timeout <s>]",
    summary:
      "send a command; with --wait follow the stream until command.completed, command.failed or ask.created and print it",
    options: {
      params: { type: "string" },
      context: { type: "string" },
      "command-id": { type: "string" },
      "correlation-id": { type: "string" },
      wait: { type: "boolean" },
      timeout: { type: "string" },
    },
    args: [1, 1],
  },
  watch: {
    usage: "watch [--cursor <report_id>] [--ndjson] [--ticket]",
    summary: "print the report stream (resumes and dedupes on its own) until interrupted",
    options: { cursor: { type: "string" }, ndjson: { type: "boolean" }, ticket: { type: "boolean" } },
    args: [0, 0],
  },
  approve: {
    usage: "approve <ask_id> [--note <text>] [--correlation-id <id>]",
    summary: "approve an ask",
    options: { note: { type: "string" }, "correlation-id": { type: "string" } },
    args: [1, 1],
  },
  reject: {
    usage: "reject <ask_id> [--note <text>] [--correlation-id <id>]",
    summary: "reject an ask",
    options: { note: { type: "string" }, "correlation-id": { type: "string" } },
    args: [1, 1],
  },
  snapshot: {
    usage: "snapshot [--ticket] [--timeout <s>]",
    summary: "print the current snapshot (the stream's first event) as JSON",
    options: { ticket: { type: "boolean" }, timeout: { type: "string" } },
    args: [0, 0],
  },
  history: {
    usage: "history [--before <report_id>] [--limit <1..500>]",
    summary: "print a page of archived reports, newest first, as JSON",
    options: { before: { type: "string" }, limit: { type: "string" } },
    args: [0, 0],
  },
  dlq: {
    usage:
      "dlq list [--limit <n>] [--before <id>] [--source cmd|approval] [--code <CODE>] [--json] | dlq show <id> | dlq requeue <id> | dlq drop <id>",
    summary: "list, show, requeue or drop dead letters (admin)",
    options: {
      limit: { type: "string" },
      before: { type: "string" },
      source: { type: "string" },
      code: { type: "string" },
      json: { type: "boolean" },
    },
    args: [1, 2],
  },
};

const ALL_OPTIONS: Options = Object.assign({}, GLOBAL, ...Object.values(COMMANDS).map((c) => c.options));

/** The full help text. */
export function usage(): string {
  const lines = [
    "Usage: nexus [global options] <command> [arguments]",
    "",
    "Commands:",
    ...Object.values(COMMANDS).map((c) => `  ${c.usage}\n      ${c.summary}`),
    "",
    "Global options (environment variable in brackets):",
    "  --url <url>          gateway URL [NEXUS_URL] (default http://localhost:8080)",
    "  --org <org_id>       tenant org [NEXUS_ORG]",
    "  --project <id>       tenant project [NEXUS_PROJECT]",
    "  --token <jwt>        bearer token [NEXUS_TOKEN]",
    "  --api-key <key>      API key [NEXUS_API_KEY]",
    "  --user <id>          x-user-id in header mode [NEXUS_USER]",
    "  --roles <a,b>        x-roles in header mode [NEXUS_ROLES]",
    "  -h, --help           this help",
    "",
    "Exit codes: 0 ok, 1 error (code and message on stderr), 2 usage.",
  ];
  return lines.join("\n");
}

function commandUsage(name: string): string {
  const c = COMMANDS[name];
  return c
    ? `Usage: nexus [global options] ${c.usage}\n  ${c.summary}\n\nRun \`nexus --help\` for global options.`
    : usage();
}

function jsonOption(value: unknown, name: string): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(String(value));
  } catch {
    throw new UsageError(`--${name} must be JSON, e.g. --${name} '{"text":"Hello."}'`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new UsageError(`--${name} must be a JSON object`);
  return v as Record<string, unknown>;
}

function intOption(value: unknown, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be an integer in ${min}..${max}`);
  return n;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** Picks the auth mode from the options: token → bearer, API key → apiKey, else header mode. */
function authFrom(v: Record<string, unknown>, env: CliIo["env"]): ClientAuth {
  const org = str(v.org) ?? env.NEXUS_ORG;
  const project = str(v.project) ?? env.NEXUS_PROJECT;
  const tenant = org !== undefined && project !== undefined ? { org_id: org, project_id: project } : undefined;
  if ((org === undefined) !== (project === undefined))
    throw new UsageError("give both --org and --project (or NEXUS_ORG and NEXUS_PROJECT)");
  const token = str(v.token) ?? env.NEXUS_TOKEN;
  if (token) return { mode: "bearer", token, ...(tenant ? { tenant } : {}) };
  const key = str(v["api-key"]) ?? env.NEXUS_API_KEY;
  if (!tenant) throw new UsageError("the tenant is required: --org and --project (or NEXUS_ORG and NEXUS_PROJECT)");
  if (key) return { mode: "apiKey", key, tenant };
  const user = str(v.user) ?? env.NEXUS_USER;
  const roles = (str(v.roles) ?? env.NEXUS_ROLES)
    ?.split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  return { mode: "headers", tenant, ...(user ? { userId: user } : {}), ...(roles?.length ? { roles } : {}) };
}

const json = (v: unknown) => JSON.stringify(v, null, 2);

/**
 * Runs one `nexus` invocation.
 * @returns the exit code (0 ok, 1 error, 2 usage).
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  let name: string | undefined;
  try {
    // First pass: find the command (every option known, nothing enforced).
    const first = parseArgs({ args: argv, options: ALL_OPTIONS, allowPositionals: true, strict: false });
    name = first.positionals[0];
    if (!name) {
      if (first.values.help) {
        io.out(usage());
        return 0;
      }
      throw new UsageError("no command given");
    }
    const spec = COMMANDS[name];
    if (!spec) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    // Second pass: strict, with the global options and this command's.
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...GLOBAL, ...spec.options },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out(commandUsage(name));
      return 0;
    }
    const args = positionals.slice(1);
    if (args.length < spec.args[0] || args.length > spec.args[1])
      throw new UsageError(
        `${name}: expected ${spec.args[0] === spec.args[1] ? spec.args[0] : `${spec.args[0]}-${spec.args[1]}`} argument(s), got ${args.length}`,
      );
    const client = createClient({
      baseUrl: str(values.url) ?? io.env.NEXUS_URL ?? "http://localhost:8080",
      auth: authFrom(values, io.env),
      onRetry: (r) =>
        io.err(
          `nexus: ${r.unconfirmed ? "confirming… " : ""}${r.method} ${r.path} answered ${r.error.code}; retrying in ${r.delayMs} ms`,
        ),
    });
    return await (COMMAND_RUNNERS[name] as Runner)(client, args, values, io);
  } catch (err) {
    return report(err, io, name);
  }
}

function report(err: unknown, io: CliIo, name: string | undefined): number {
  if (
    err instanceof UsageError ||
    (err instanceof TypeError && String((err as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS"))
  ) {
    io.err(`nexus: ${err.message}\n`);
    io.err(name && COMMANDS[name] ? commandUsage(name) : usage());
    return 2;
  }
  if (io.signal.aborted) return 130;
  if (isNexusApiError(err)) {
    io.err(`error: ${err.code}: ${err.message}`);
    for (const d of err.details ?? []) io.err(`  - ${d.path || "(body)"}: ${d.issue}`);
    if (err.correlation_id) io.err(`  correlation_id: ${err.correlation_id}`);
    return 1;
  }
  io.err(`error: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
}

type Runner = (client: NexusClient, args: string[], values: Record<string, unknown>, io: CliIo) => Promise<number>;

const TERMINAL = new Set(["command.completed", "command.failed", "ask.created"]);

const COMMAND_RUNNERS: Record<string, Runner> = {
  async send(client, [type], v, io) {
    const params = jsonOption(v.params, "params") ?? {};
    const context = jsonOption(v.context, "context");
    const timeoutMs = (intOption(v.timeout, "timeout", 1, 86_400) ?? 120) * 1000;
    // The CLI names the command itself so that an unconfirmed send can be repeated as is.
    const commandId = str(v["command-id"]) ?? crypto.randomUUID();
    const correlationId = str(v["correlation-id"]);
    const send = () =>
      client
        .sendCommand(
          {
            type: type as string,
            params,
            ...(context ? { context } : {}),
            command_id: commandId,
            client_context: { surface: "cli", ...(correlationId ? { correlation_id: correlationId } : {}) },
          },
          { signal: io.signal },
        )
        .catch((err) => {
          if (isNexusApiError(err, "ACCEPT_UNCONFIRMED"))
            io.err(`nexus: unconfirmed; repeat with --command-id ${commandId} to learn the outcome`);
          throw err;
        });
    if (!v.wait) {
      io.out(json(await send()));
      return 0;
    }
    // Follow first (snapshot received), then send, so that no follow-up report can be missed.
    const f = client.follow({ signal: io.signal });
    try {
      await f.ready({ timeoutMs, signal: io.signal });
      const accepted = await send();
      io.err(`nexus: accepted ${accepted.command_id} (correlation ${accepted.correlation_id}); waiting…`);
      const r = await f.waitFor(
        (ev) => {
          if (ev.type === "progress" && ev.data.progress.command_id === accepted.command_id)
            io.err(
              `nexus: ${ev.data.progress.stage}${ev.data.progress.percent !== undefined ? ` ${ev.data.progress.percent}%` : ""}`,
            );
          return ev.type === "report" &&
            ev.data.causality.command_id === accepted.command_id &&
            TERMINAL.has(ev.data.report.type)
            ? ev.data
            : undefined;
        },
        { timeoutMs, signal: io.signal },
      );
      io.out(json(r));
      if (r.report.type === "command.failed") {
        io.err(`error: ${r.report.error.code}: ${r.report.error.message}`);
        return 1;
      }
      return 0;
    } finally {
      f.close();
    }
  },

  async watch(client, _args, v, io) {
    const cursor = str(v.cursor);
    if (cursor !== undefined && !/^(0|[1-9][0-9]{0,15})$/.test(cursor))
      throw new UsageError("--cursor must be a report_id (a decimal number)");
    const stream = client.events({ ...(cursor ? { cursor } : {}), ticket: v.ticket === true, signal: io.signal });
    const ndjson = v.ndjson === true;
    for await (const ev of stream) printEvent(ev, ndjson, io);
    return 0;
  },

  async approve(client, [askId], v, io) {
    const r = await client.approve(
      askId as string,
      { note: str(v.note), correlation_id: str(v["correlation-id"]) },
      { signal: io.signal },
    );
    io.out(json(r));
    return 0;
  },

  async reject(client, [askId], v, io) {
    const r = await client.reject(
      askId as string,
      { note: str(v.note), correlation_id: str(v["correlation-id"]) },
      { signal: io.signal },
    );
    io.out(json(r));
    return 0;
  },

  async snapshot(client, _args, v, io) {
    const timeoutMs = (intOption(v.timeout, "timeout", 1, 3600) ?? 30) * 1000;
    io.out(json(await client.snapshot({ ticket: v.ticket === true, timeoutMs, signal: io.signal })));
    return 0;
  },

  async history(client, _args, v, io) {
    const page = await client.history(
      { before: str(v.before), limit: intOption(v.limit, "limit", 1, 500) },
      { signal: io.signal },
    );
    io.out(json(page));
    return 0;
  },

  async dlq(client, [sub, id], v, io) {
    const needId = () => {
      if (!id) throw new UsageError(`dlq ${sub} needs an <id>`);
      return id;
    };
    switch (sub) {
      case "list": {
        if (id) throw new UsageError("dlq list takes no <id>");
        const source = str(v.source);
        if (source !== undefined && source !== "cmd" && source !== "approval")
          throw new UsageError("--source is cmd or approval");
        const page = await client.deadLetters.list(
          { limit: intOption(v.limit, "limit", 1, 1000), before: str(v.before), source, code: str(v.code) },
          { signal: io.signal },
        );
        if (v.json) io.out(json(page));
        else {
          io.out(page.dead_letters.length > 0 ? deadLetterTable(page.dead_letters) : "(no dead letters)");
          if (page.next_before) io.out(`more: nexus dlq list --before ${page.next_before}`);
        }
        return 0;
      }
      case "show":
        io.out(json(await client.deadLetters.get(needId(), { signal: io.signal })));
        return 0;
      case "requeue": {
        const r = await client.deadLetters.requeue(needId(), { signal: io.signal });
        io.out(Object.keys(r).length > 0 ? json(r) : `requeued ${id}`);
        return 0;
      }
      case "drop":
        await client.deadLetters.drop(needId(), { signal: io.signal });
        io.out(`dropped ${id}`);
        return 0;
      default:
        throw new UsageError(`unknown dlq subcommand ${JSON.stringify(sub)} (list, show, requeue, drop)`);
    }
  },
};

/** Prints one stream event: data events to stdout, connection state to stderr, pings not at all. */
function printEvent(ev: StreamEvent, ndjson: boolean, io: CliIo): void {
  switch (ev.type) {
    case "snapshot":
    case "report":
    case "progress":
    case "error":
      if (ndjson) io.out(JSON.stringify({ event: ev.type, data: ev.data }));
      else if (ev.type === "snapshot") io.out(prettySnapshot(ev.data));
      else if (ev.type === "report") io.out(prettyReport(ev.data));
      else if (ev.type === "progress")
        io.out(
          `progress  cmd=${ev.data.progress.command_id} ${ev.data.progress.stage}${ev.data.progress.percent !== undefined ? ` ${ev.data.progress.percent}%` : ""}`,
        );
      else io.out(`error  ${ev.data.error.code}: ${ev.data.error.message}`);
      return;
    case "open":
      io.err(`# connected${ev.cursor ? ` (resuming after #${ev.cursor})` : ""}`);
      return;
    case "reconnecting":
      io.err(`# ${ev.reason}; reconnecting in ${ev.delayMs} ms (attempt ${ev.attempt})`);
      return;
    case "resynced":
      io.err(`# resynced from a fresh snapshot #${ev.report_id} (${ev.reason})`);
      return;
    case "unrecognized":
      io.err(`# skipped ${ev.event} event: ${ev.issue}`);
      return;
    case "ping":
      return;
  }
}

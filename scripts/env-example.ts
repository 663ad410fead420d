/**
 * `pnpm env:example`: writes `.env.example` — every environment variable of NEXUS Console API
 * with its default and meaning — generated from the zod configurations of the services (the
 * one place each variable is defined; the meaning is the TSDoc comment above it), the standard
 * OpenTelemetry variables, and the variables of `pnpm start`, the compose files and the CLI.
 * `test/deploy/env-example.test.ts` fails when the file is out of date or misses a variable.
 *
 * `pnpm env:example --check` exits 1 instead of writing when the file differs.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AuthConfig } from "@nexus/http";
import { BaseConfig, WaitProvisionedConfig, WorkerTriageConfig } from "@nexus/runtime";
import { OTEL_VARIABLES } from "@nexus/runtime/tracing";
import { ApprovalWorkerConfig } from "../services/approval-worker/src/config.ts";
import { ArchiverConfig } from "../services/archiver/src/config.ts";
import { CommandWorkerConfig } from "../services/command-worker/src/config.ts";
import { GatewayConfig } from "../services/gateway/src/config.ts";
import { StreamConfig } from "../services/stream/src/config.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The TSDoc comment above each `KEY:` of the zod object literals in `files`, as one line. A key
 * without one shares the comment of the key before it (`NATS_USER` / `NATS_PASSWORD`).
 */
function docComments(files: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of files) {
    const lines = fs.readFileSync(path.join(ROOT, f), "utf8").split("\n");
    let pending: string[] | undefined;
    let inComment = false;
    let last = "";
    for (const line of lines) {
      if (/^\s*\/\*\*/.test(line)) {
        inComment = true;
        pending = [];
      }
      if (inComment) {
        pending?.push(
          line
            .replace(/^\s*\/?\*+\/?/, "")
            .replace(/\*\/\s*$/, "")
            .trim(),
        );
        if (/\*\/\s*$/.test(line)) inComment = false;
        continue;
      }
      const key = /^\s*([A-Z][A-Z0-9_]+):/.exec(line)?.[1];
      if (key) {
        const text = pending ? pending.filter(Boolean).join(" ") : last;
        if (!out.has(key)) out.set(key, text);
        last = text;
        pending = undefined;
      } else if (line.trim() !== "" && !/^\s*(\.|\)|\}|\/\/)/.test(line)) pending = undefined;
    }
  }
  return out;
}

/** What this script needs of a zod schema (the root package does not depend on zod itself). */
interface Schema {
  safeParse(v: unknown): { success: boolean; data?: unknown };
}

/** The default of a zod field as an env value ("" when it has none). */
function defaultOf(field: Schema): string {
  const r = field.safeParse(undefined);
  if (!r.success || r.data === undefined) return "";
  const v = r.data as unknown;
  if (Array.isArray(v)) return v.join(",");
  if (typeof v === "boolean") return v ? "true" : "false";
  return String(v);
}

const shape = (s: Schema): Record<string, Schema> => {
  // biome-ignore lint/suspicious/noExplicitAny: zod objects (possibly wrapped in a refinement) expose their shape
  const o = s as any;
  return (o.shape ?? o.def?.in?.shape ?? o._def?.schema?.shape ?? {}) as Record<string, Schema>;
};

const SERVICES: Record<string, Schema> = {
  gateway: GatewayConfig,
  stream: StreamConfig,
  "command-worker": CommandWorkerConfig,
  "approval-worker": ApprovalWorkerConfig,
  archiver: ArchiverConfig,
};

interface Entry {
  name: string;
  default: string;
  meaning: string;
  usedBy: string;
}

/** Renders `.env.example`. */
export function renderEnvExample(): string {
  const docs = docComments([
    "packages/runtime/src/config.ts",
    "packages/http/src/auth.ts",
    ...Object.keys(SERVICES).map((s) => `services/${s}/src/config.ts`),
  ]);
  const usedBy = (key: string) =>
    Object.entries(SERVICES)
      .filter(([, s]) => key in shape(s))
      .map(([n]) => n)
      .join(", ");
  // A service's own comment wins: two services may give one variable different meanings.
  const ownDocs = Object.fromEntries(
    Object.keys(SERVICES).map((s) => [s, docComments([`services/${s}/src/config.ts`])]),
  );
  const entries = (schema: Schema, except: Set<string>, who?: string): Entry[] =>
    Object.entries(shape(schema))
      .filter(([k]) => !except.has(k))
      .map(([k, field]) => ({
        name: k,
        default: defaultOf(field),
        meaning: (who ? ownDocs[who]?.get(k) : undefined) ?? docs.get(k) ?? "",
        usedBy: who ?? usedBy(k),
      }));
  const base = new Set(Object.keys(shape(BaseConfig)));
  const auth = new Set(Object.keys(shape(AuthConfig)));
  const triage = new Set(Object.keys(shape(WorkerTriageConfig)));
  const common = new Set([...base, ...auth, ...triage]);

  const sections: [string, Entry[]][] = [
    ["Every service (and provisioning)", entries(BaseConfig, new Set(), "all")],
    ["Authentication (gateway, stream)", entries(AuthConfig, new Set())],
    ["Dead-letter triage and consumer health (workers)", entries(WorkerTriageConfig, new Set())],
    ...Object.entries(SERVICES).map(([n, s]) => [n, entries(s, common, n)] as [string, Entry[]]),
    ["wait-provisioned (Kubernetes init container)", entries(WaitProvisionedConfig, base, "wait-provisioned")],
    [
      "OpenTelemetry (read by the OpenTelemetry SDK; tracing is off unless an endpoint or exporter is set)",
      OTEL_VARIABLES.map((v) => ({ name: v.name, default: v.default, meaning: v.meaning, usedBy: "all" })),
    ],
    [
      "pnpm start (ports of the processes it spawns, where it keeps data)",
      [
        ...[
          ["GATEWAY_PORT", "8080"],
          ["STREAM_PORT", "8081"],
          ["COMMAND_WORKER_PORT", "8082"],
          ["APPROVAL_WORKER_PORT", "8083"],
          ["ARCHIVER_PORT", "8084"],
          ["NATS_PORT", "4222"],
          ["PG_PORT", "5433"],
        ].map(([name, d]) => ({
          name: name as string,
          default: d as string,
          meaning: "port used by pnpm start",
          usedBy: "pnpm start",
        })),
        {
          name: "NEXUS_DATA_DIR",
          default: ".data",
          meaning: "where pnpm start keeps Postgres' data directory, the JetStream store and the logs",
          usedBy: "pnpm start",
        },
        {
          name: "NEXUS_START_NO_BUILD",
          default: "",
          meaning: "1 skips building the console before starting (it must be built already)",
          usedBy: "pnpm start",
        },
      ],
    ],
    [
      "docker compose (docker-compose.yml reads these from .env)",
      [
        ...["GATEWAY", "COMMAND_WORKER", "APPROVAL_WORKER", "STREAM", "ARCHIVER", "OPERATOR", "PROVISION"].map((u) => ({
          name: `NEXUS_${u}_NATS_PASSWORD`,
          default: `dev-${u.toLowerCase().replace(/_/g, "-")}-nats-password`,
          meaning: `the NATS password of user ${u.toLowerCase().replace(/_/g, "-")} (>= 24 random characters outside a laptop)`,
          usedBy: "nats, compose, pnpm nats:config",
        })),
        {
          name: "NEXUS_GATEWAY_PORT",
          default: "8080",
          meaning: "host port of the gateway (loopback)",
          usedBy: "compose",
        },
        { name: "NEXUS_NATS_PORT", default: "4222", meaning: "host port of NATS (loopback)", usedBy: "compose" },
        {
          name: "NEXUS_NATS_EXPORTER_PORT",
          default: "7777",
          meaning: "host port of the NATS Prometheus exporter (loopback)",
          usedBy: "compose",
        },
        {
          name: "NEXUS_PROMETHEUS_PORT",
          default: "9090",
          meaning: "host port of Prometheus (--profile observability)",
          usedBy: "compose",
        },
      ],
    ],
    [
      "The nexus CLI (pnpm nexus, pnpm dlq)",
      [
        ["NEXUS_URL", "http://localhost:8080", "the gateway's base URL"],
        ["NEXUS_ORG", "", "tenant org_id (header mode)"],
        ["NEXUS_PROJECT", "", "tenant project_id (header mode)"],
        ["NEXUS_API_KEY", "", "an API key (x-api-key)"],
        ["NEXUS_TOKEN", "", "a JWT (Authorization: Bearer)"],
        ["NEXUS_USER", "", "x-user-id in header mode"],
        ["NEXUS_ROLES", "", "x-roles in header mode (e.g. admin)"],
      ].map(([name, d, meaning]) => ({
        name: name as string,
        default: d as string,
        meaning: meaning as string,
        usedBy: "CLI",
      })),
    ],
  ];

  const lines = [
    "# NEXUS Console API — every environment variable, with its default and meaning.",
    "# Generated by `pnpm env:example` from the services' configurations (packages/runtime/src/config.ts,",
    "# packages/http/src/auth.ts, services/*/src/config.ts); do not edit by hand. A test fails when it is",
    "# out of date. Copy to .env (docker compose reads it) or export what you change; unset or empty",
    "# means the default. Units are in the names (_MS milliseconds, _SECONDS, _BYTES).",
  ];
  for (const [title, list] of sections) {
    if (list.length === 0) continue;
    lines.push("", `# ──── ${title} ────`);
    for (const e of list) {
      lines.push("");
      const meaning = e.meaning || "(no description)";
      for (const l of wrap(`${meaning} [${e.usedBy}]`, 96)) lines.push(`# ${l}`);
      lines.push(`# ${e.name}=${e.default}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = path.join(ROOT, ".env.example");
  const text = renderEnvExample();
  if (process.argv.includes("--check")) {
    const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
    if (current !== text) {
      console.error(".env.example is out of date: run pnpm env:example");
      process.exit(1);
    }
    console.log(".env.example is current");
  } else {
    fs.writeFileSync(file, text);
    console.log(
      `wrote .env.example (${text.split("\n").filter((l) => /^# [A-Z][A-Z0-9_]*=/.test(l)).length} variables)`,
    );
  }
}

/**
 * `pnpm asyncapi`: writes `docs/asyncapi.yaml`, the AsyncAPI 3.0 description of the report
 * stream's SSE events and of the NATS subjects and JetStream streams, with every payload schema
 * generated from the zod contracts (`z.toJSONSchema`, JSON Schema draft-07, which AsyncAPI
 * schemas extend). `test/docs/asyncapi.test.ts` checks that the committed file is what this
 * renders and that `@asyncapi/parser` finds no error in it. `--check` compares instead of writing.
 *
 * Source: AsyncAPI Specification 3.0.0 (channels, operations, messages, components).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as contracts from "@nexus/contracts";
import {
  AgentReport,
  ApiError,
  ApprovedActionMessage,
  AskEventMessage,
  CaseActionNotification,
  Causality,
  CONSUMERS,
  CommandMessage,
  DeadLetter,
  ErrorEvent,
  PingEvent,
  ReportEvent,
  ReportMessage,
  SnapshotEvent,
  SSE_RETRY_MS,
  SseEventName,
  STREAMS,
  Tenant,
} from "@nexus/contracts";
import { stringify } from "yaml";
import { z } from "zod";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** Where the committed copy lives. */
export const ASYNCAPI_FILE = path.join(ROOT, "docs", "asyncapi.yaml");

type Json = Record<string, unknown>;

/**
 * The live progress event, from the contracts when they define it; until then the shape the
 * contract describes (`{ progress: { command_id, stage, percent?, text_delta? }, causality, tenant, ts }`).
 */
const ProgressEvent: z.ZodType =
  (contracts as unknown as Partial<Record<"ProgressEvent", z.ZodType>>).ProgressEvent ??
  z.object({
    progress: z.object({
      command_id: z.string(),
      stage: z.string(),
      percent: z.number().min(0).max(100).optional(),
      text_delta: z.string().optional(),
    }),
    causality: Causality,
    tenant: Tenant,
    ts: z.string(),
  });

/** Payload schemas, by component name. */
const SCHEMAS: Record<string, z.ZodType> = {
  Tenant,
  ApiError,
  Causality,
  AgentReport,
  ReportEvent,
  SnapshotEvent,
  PingEvent,
  ErrorEvent,
  ProgressEvent,
  ReportMessage,
  CommandMessage,
  ApprovedActionMessage,
  AskEventMessage,
  DeadLetter,
  CaseActionNotification,
};

/** Components generated from {@link SCHEMAS}; shared shapes are `$ref`s between them. */
function schemaComponents(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, s] of Object.entries(SCHEMAS)) registry.add(s, { id });
  const { schemas } = z.toJSONSchema(registry, {
    target: "draft-7",
    io: "output",
    unrepresentable: "any",
    uri: (id) => `#/components/schemas/${id}`,
  });
  const out: Record<string, Json> = {};
  for (const [id, s] of Object.entries(schemas)) {
    const { $schema: _s, id: _i, $id: _d, ...rest } = s as Json;
    out[id] = rest;
  }
  return out;
}

const param = (description: string) => ({ description });
const TENANT_PARAMS = {
  org_id: param("The tenant's org_id: 1-64 characters of [A-Za-z0-9_-]"),
  project_id: param("The tenant's project_id: 1-64 characters of [A-Za-z0-9_-]"),
};

const natsHeaders = (extra: Record<string, Json> = {}): Json => ({
  type: "object",
  properties: {
    "Nats-Msg-Id": {
      type: "string",
      description:
        "Names the fact the message states (`<org>.<project>.<entity>[:<step>]`); a second publish inside the duplicate window is stored once",
    },
    "Nexus-Correlation-Id": { type: "string" },
    "Nexus-Org-Id": { type: "string" },
    "Nexus-Project-Id": { type: "string" },
    traceparent: { type: "string", description: "W3C Trace Context" },
    ...extra,
  },
});

const ref = (kind: string, name: string) => ({ $ref: `#/components/${kind}/${name}` });

/** The document (see the module doc). */
export function asyncApiDocument(): Json {
  const sse = (name: string, payload: string, withId: boolean, summary: string): Json => ({
    name,
    title: `SSE ${name}`,
    summary,
    contentType: "application/json",
    payload: ref("schemas", payload),
    ...(withId
      ? {
          correlationId: {
            description: "The SSE `id:` line: the report_id, which the client sends back as Last-Event-ID",
            location: "$message.payload#/report_id",
          },
        }
      : {}),
  });
  const sseMessages: Record<string, Json> = {
    snapshot: sse(
      "snapshot",
      "SnapshotEvent",
      true,
      "First on a connection without a valid cursor: the tenant's state at report_id W (`id: W`).",
    ),
    report: sse(
      "report",
      "ReportEvent",
      true,
      "One report, in report_id order (`id: <report_id>`); dedupe by report_id.",
    ),
    ping: sse("ping", "PingEvent", false, "Heartbeat every SSE_HEARTBEAT_MS (15 s); no `id:`."),
    error: sse(
      "error",
      "ErrorEvent",
      false,
      "No `id:`. CURSOR_EXPIRED (a fresh snapshot follows), CREDENTIAL_EXPIRED (authenticate again and resume), DEPENDENCY_UNAVAILABLE (the connection ends).",
    ),
    progress: sse(
      "progress",
      "ProgressEvent",
      false,
      "Live progress of a long command: no `id:`, never stored or replayed; the completing report carries the result.",
    ),
  };
  const sseEvents = SseEventName.options.filter((e) => e in sseMessages);

  const channels: Record<string, Json> = {
    reportStream: {
      address: "/agent/reports/stream",
      title: "The report stream (Server-Sent Events, LOCKED)",
      servers: [{ $ref: "#/servers/gateway" }],
      description: [
        `\`GET /agent/reports/stream\`, \`text/event-stream\`; the first bytes are \`retry: ${SSE_RETRY_MS}\`.`,
        "Without a cursor: one `snapshot`, then every later report live. With a cursor (the Last-Event-ID header, else `?cursor=`) inside retention: every report after it, without gap or duplicate. An invalid cursor: `error` CURSOR_EXPIRED, then a fresh `snapshot`.",
        "Only `snapshot` and `report` carry `id:`. Unknown event names must be ignored.",
      ].join("\n\n"),
      messages: Object.fromEntries(sseEvents.map((e) => [e, ref("messages", `sse.${e}`)])),
    },
    commands: {
      address: "nexus.cmd.{org_id}.{project_id}.{command_id}",
      title: "Commands",
      servers: [{ $ref: "#/servers/nats" }],
      description: `Stream \`${STREAMS.commands}\`, durable pull consumer \`${CONSUMERS.commandWorker}\`. One subject per command: the gateway publishes with \`Nats-Expected-Last-Subject-Sequence: 0\`, so the publish is the idempotency check (at most one body per command id).`,
      parameters: { ...TENANT_PARAMS, command_id: param("The command id: 1-128 characters of [A-Za-z0-9_:-]") },
      messages: { command: ref("messages", "command") },
    },
    approvedActions: {
      address: "nexus.cmd.{org_id}.{project_id}.{command_id}.approved",
      title: "Approved actions",
      servers: [{ $ref: "#/servers/nats" }],
      description: `Stream \`${STREAMS.commands}\`: the approval-worker dispatches an approved ask's action back to the command-worker, which runs it once.`,
      parameters: { ...TENANT_PARAMS, command_id: param("The held command's id") },
      messages: { approvedAction: ref("messages", "approvedAction") },
    },
    approvals: {
      address: "nexus.approval.{org_id}.{project_id}.{ask_id}",
      title: "Ask registers",
      servers: [{ $ref: "#/servers/nats" }],
      description: `Stream \`${STREAMS.approvals}\`, durable pull consumer \`${CONSUMERS.approvalWorker}\`. Each ask's register: every writer (the gateway for decisions, the expiry sweeper) publishes with \`Nats-Expected-Last-Subject-Sequence\` = the newest entry's sequence, so racing writers are ordered and exactly one wins each step. Each entry carries the cumulative state.`,
      parameters: { ...TENANT_PARAMS, ask_id: param("The ask id: 1-128 characters of [A-Za-z0-9_:-]") },
      messages: { askEvent: ref("messages", "askEvent") },
    },
    reports: {
      address: "nexus.report.{org_id}.{project_id}",
      title: "Reports",
      servers: [{ $ref: "#/servers/nats" }],
      description: `Stream \`${STREAMS.reports}\`: one subject per tenant, the newest STREAM_EVENT_KEEP (2000) kept. A report's JetStream sequence is its report_id. Read by the stream service with ordered consumers (one per tenant per instance).`,
      parameters: TENANT_PARAMS,
      messages: { report: ref("messages", "report") },
    },
    deadLetters: {
      address: "nexus.dlq.{org_id}.{project_id}.{source}",
      title: "Dead letters",
      servers: [{ $ref: "#/servers/nats" }],
      description: `Stream \`${STREAMS.dlq}\` (30 days): messages that did not parse (poison) or failed on every attempt; \`_unknown._unknown\` when the tenant could not be read. For operators.`,
      parameters: { ...TENANT_PARAMS, source: { enum: ["cmd", "approval"], description: "Which worker gave up" } },
      messages: { deadLetter: ref("messages", "deadLetter") },
    },
    notifications: {
      address: "nexus.notify.{org_id}.{project_id}.case_action",
      title: "CASE_ACTION notifications",
      servers: [{ $ref: "#/servers/nats" }],
      description: `Stream \`${STREAMS.notify}\` (7 days), for other back-end systems on durable consumers of their own. At least once: dedupe by \`notification_id\`; treat unknown fields as optional.`,
      parameters: TENANT_PARAMS,
      messages: { caseAction: ref("messages", "caseAction") },
    },
    progress: {
      address: "nexus.progress.{org_id}.{project_id}",
      title: "Live progress",
      servers: [{ $ref: "#/servers/nats" }],
      description:
        "Core NATS, not stored: the command-worker may publish live progress of long commands; the stream service relays it as SSE `progress` events. Subscribers see only what is published while they listen.",
      parameters: TENANT_PARAMS,
      messages: { progress: ref("messages", "progress") },
    },
  };

  const natsMessage = (name: string, payload: string, summary: string, headers?: Json): Json => ({
    name,
    title: name,
    summary,
    contentType: "application/json",
    headers: headers ?? natsHeaders(),
    payload: ref("schemas", payload),
    correlationId: { location: "$message.header#/Nexus-Correlation-Id" },
  });
  const messages: Record<string, Json> = {
    ...Object.fromEntries(sseEvents.map((e) => [`sse.${e}`, sseMessages[e] as Json])),
    command: natsMessage(
      "command",
      "CommandMessage",
      "A command as the gateway accepted it (`Nats-Msg-Id` = `<org>.<project>.<command_id>`).",
      natsHeaders({
        "Nexus-Kind": { type: "string", const: "command" },
        "Nexus-Command-Type": { type: "string" },
      }),
    ),
    approvedAction: natsMessage("approvedAction", "ApprovedActionMessage", "An approved ask's action, to be run once."),
    askEvent: natsMessage(
      "askEvent",
      "AskEventMessage",
      "One register entry: a decision or an expiry, with the cumulative state.",
    ),
    report: natsMessage(
      "report",
      "ReportMessage",
      "A report as published; the stream service adds `report_id` (the sequence).",
    ),
    deadLetter: natsMessage("deadLetter", "DeadLetter", "A parked message and why."),
    caseAction: natsMessage(
      "caseAction",
      "CaseActionNotification",
      "An ask was approved, rejected, expired or executed.",
    ),
    progress: {
      name: "progress",
      title: "progress",
      summary: "Live progress of one command (the SSE `progress` event's data).",
      contentType: "application/json",
      payload: ref("schemas", "ProgressEvent"),
    },
  };

  const op = (action: "send" | "receive", channel: string, who: string, msgs: string[], summary: string) => ({
    action,
    channel: { $ref: `#/channels/${channel}` },
    title: `${who} ${action}s`,
    summary,
    messages: msgs.map((m) => ({ $ref: `#/channels/${channel}/messages/${m}` })),
  });
  const operations = {
    streamSendsReportEvents: op(
      "send",
      "reportStream",
      "stream",
      sseEvents,
      "The stream service (through the gateway) sends each connection its snapshot or replay, then live reports.",
    ),
    gatewaySendsCommand: op(
      "send",
      "commands",
      "gateway",
      ["command"],
      "POST /sidecar/command publishes here; 202 after the PubAck.",
    ),
    commandWorkerReceivesCommand: op(
      "receive",
      "commands",
      "command-worker",
      ["command"],
      "Runs GREEN/YELLOW, holds RED as an ask; acks after its effects are published.",
    ),
    approvalWorkerSendsApprovedAction: op(
      "send",
      "approvedActions",
      "approval-worker",
      ["approvedAction"],
      "Dispatches an approved action.",
    ),
    commandWorkerReceivesApprovedAction: op(
      "receive",
      "approvedActions",
      "command-worker",
      ["approvedAction"],
      "Checks the action is unchanged, runs it once.",
    ),
    gatewaySendsDecision: op(
      "send",
      "approvals",
      "gateway",
      ["askEvent"],
      "POST /approvals/{ask_id}/decide appends a decision; the expiry sweeper appends expiry the same way.",
    ),
    approvalWorkerReceivesAskEvent: op(
      "receive",
      "approvals",
      "approval-worker",
      ["askEvent"],
      "Applies entries in sequence order to the ask's row, once.",
    ),
    servicesSendReport: op(
      "send",
      "reports",
      "gateway and workers",
      ["report"],
      "Every report, with a message id derived from its fact.",
    ),
    streamReceivesReport: op(
      "receive",
      "reports",
      "stream",
      ["report"],
      "One ordered consumer per tenant per instance, shared by its connections.",
    ),
    workersSendDeadLetter: op(
      "send",
      "deadLetters",
      "workers",
      ["deadLetter"],
      "Poison at once; others after MAX_ATTEMPTS deliveries.",
    ),
    workersSendCaseAction: op(
      "send",
      "notifications",
      "workers",
      ["caseAction"],
      "After the commit of the transition each describes.",
    ),
    commandWorkerSendsProgress: op(
      "send",
      "progress",
      "command-worker",
      ["progress"],
      "At most a few per second per command.",
    ),
    streamReceivesProgress: op(
      "receive",
      "progress",
      "stream",
      ["progress"],
      "Relayed to the tenant's connections as SSE `progress`.",
    ),
  };

  return {
    asyncapi: "3.0.0",
    info: {
      title: "NEXUS Console API: events",
      version: "0.1.0",
      description: [
        "The report stream's Server-Sent Events, and the NATS subjects and JetStream streams the services use among themselves.",
        "Payload schemas are generated from the zod contracts of `@nexus/contracts`. The HTTP endpoints are in openapi.json; the prose is docs/contract.md and docs/architecture.md.",
      ].join("\n\n"),
    },
    defaultContentType: "application/json",
    servers: {
      gateway: {
        host: "localhost:8080",
        protocol: "http",
        description: "The gateway; it proxies the report stream to the stream service.",
        security: [
          ref("securitySchemes", "bearer"),
          ref("securitySchemes", "apiKey"),
          ref("securitySchemes", "tenantHeaders"),
          ref("securitySchemes", "ticket"),
        ],
      },
      nats: {
        host: "localhost:4222",
        protocol: "nats",
        description:
          "NATS with JetStream. Every connection logs in as its service's own user with least-privilege permissions; anonymous connections are refused.",
        security: [ref("securitySchemes", "natsUser")],
      },
    },
    channels,
    operations,
    components: {
      schemas: schemaComponents(),
      messages,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "AUTH_MODE=jwt (or `?token=`)." },
        apiKey: { type: "httpApiKey", in: "header", name: "x-api-key", description: "An API key (or `?api_key=`)." },
        tenantHeaders: {
          type: "httpApiKey",
          in: "header",
          name: "x-org-id",
          description: "Header mode, trusted network only: x-org-id and x-project-id (or `?org_id=&project_id=`).",
        },
        ticket: {
          type: "httpApiKey",
          in: "query",
          name: "ticket",
          description: "A one-use ticket from POST /agent/reports/ticket.",
        },
        natsUser: {
          type: "userPassword",
          description:
            "One NATS user per service (gateway, command-worker, approval-worker, stream, provision, operator).",
        },
      },
    },
  };
}

/** The committed file's exact text. */
export function renderAsyncApi(): string {
  return `# GENERATED by \`pnpm asyncapi\` (scripts/asyncapi.ts) from the zod contracts — do not edit.\n${stringify(asyncApiDocument(), { lineWidth: 0, aliasDuplicateObjects: false })}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = renderAsyncApi();
  if (process.argv.includes("--check")) {
    const committed = fs.existsSync(ASYNCAPI_FILE) ? fs.readFileSync(ASYNCAPI_FILE, "utf8") : "";
    if (committed !== text) {
      console.error("docs/asyncapi.yaml is out of date: run `pnpm asyncapi`");
      process.exit(1);
    }
    console.log("docs/asyncapi.yaml is up to date");
  } else {
    fs.writeFileSync(ASYNCAPI_FILE, text);
    console.log(`wrote ${path.relative(ROOT, ASYNCAPI_FILE)}`);
  }
}

/**
 * The gateway's OpenAPI 3.1 document, generated from the route definitions and the zod contracts
 * (served at `/docs/json`, rendered by Swagger UI at `/docs`, copied to `docs/openapi.json` by
 * `pnpm openapi`).
 *
 * How it is put together:
 * 1. Every wire shape that deserves a name is registered in zod's global registry with an `id`
 *    ({@link registerOpenApiSchemas}); `fastify-type-provider-zod` then emits it once under
 *    `components.schemas` and refers to it by `$ref` wherever a route uses it.
 * 2. Each route declares its `operationId`, its `security` and its error statuses
 *    ({@link errorResponses}) next to its handler, so the description cannot drift from the route.
 * 3. {@link finishDocument} (the `transformObject` hook) adds what a route definition cannot say:
 *    the `text/event-stream` answer of the report stream with one schema per SSE event, the
 *    image answer and multipart body of the photo routes, the command body in both dialects,
 *    one named response per error status with an example per error code (from the contracts'
 *    catalogue), the header-mode identity headers; then it merges identical input/output schema
 *    variants, drops unreferenced ones, and opens response objects to additive fields.
 *
 * Sources: OpenAPI Specification 3.1.0; WHATWG HTML "Server-sent events" for the stream.
 */
import type { FastifyDynamicSwaggerOptions } from "@fastify/swagger";
import * as contracts from "@nexus/contracts";
import {
  AgentReport,
  ApiError,
  Ask,
  AskAction,
  Autopilot,
  Causality,
  COMMAND_TYPES,
  CommandAccepted,
  CommandId,
  CommandType,
  Compliance,
  CompliancePatch,
  CorrelationId,
  DecideRequest,
  DecisionAccepted,
  ErrorBody,
  ErrorCode,
  ErrorDetail,
  ErrorEvent,
  errorSpec,
  LegacyCommandRequest,
  Persona,
  PersonaPatch,
  PhotoInfo,
  PingEvent,
  Profile,
  ProfilePatch,
  ReportEvent,
  RiskLevel,
  SettingsAccepted,
  Skin,
  SkinPatch,
  Snapshot,
  SnapshotEvent,
  SSE_RETRY_MS,
  Tenant,
  WorklogEntry,
} from "@nexus/contracts";
import { createJsonSchemaTransform, jsonSchemaTransformObject } from "fastify-type-provider-zod";
import { z } from "zod";

type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Security

/**
 * Security schemes. Header mode (`orgId` + `projectId`) is for a trusted network only: the
 * gateway takes `x-user-id` and `x-roles` as given. With `AUTH_MODE=jwt` a Bearer token is
 * required; where API keys are configured, `x-api-key` is.
 */
export const SECURITY_SCHEMES = {
  bearerAuth: {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description:
      "AUTH_MODE=jwt: a JWT (HS256 with JWT_SECRET, or RS256/ES256/EdDSA from JWT_JWKS_URL) with claims org_id, project_id, sub, exp and the roles claim (JWT_ROLES_CLAIM, default `roles`). Tenant headers, when also sent, must match the claims (else 403 TENANT_MISMATCH).",
  },
  apiKey: {
    type: "apiKey",
    in: "header",
    name: "x-api-key",
    description:
      "An API key: admin-minted (`nxk_…`, POST /admin/api-keys), from API_KEYS, NEXUS_API_KEY (operator + approver) or ADMIN_API_KEY (admin). Keys that do not fix a tenant take it from x-org-id / x-project-id. Never logged; stored as SHA-256 digests.",
  },
  orgId: {
    type: "apiKey",
    in: "header",
    name: "x-org-id",
    description:
      "Header mode (the default; trusted network only): the tenant's org_id, 1-64 characters of [A-Za-z0-9_-]. Optional x-user-id (principal) and x-roles (comma-separated roles; absent means admin) are taken as given.",
  },
  projectId: {
    type: "apiKey",
    in: "header",
    name: "x-project-id",
    description: "Header mode: the tenant's project_id, 1-64 characters of [A-Za-z0-9_-].",
  },
  streamTicket: {
    type: "apiKey",
    in: "query",
    name: "ticket",
    description:
      "The report stream only: a one-use ticket from POST /agent/reports/ticket (lives at most 60 s, bound to tenant and principal).",
  },
  queryToken: {
    type: "apiKey",
    in: "query",
    name: "token",
    description:
      "Routes read by EventSource or <img> only: the JWT in the query string (redacted from logs). Prefer a ticket.",
  },
  queryApiKey: {
    type: "apiKey",
    in: "query",
    name: "api_key",
    description: "Routes read by EventSource or <img> only: an API key in the query string (redacted from logs).",
  },
} as const;

type SchemeName = keyof typeof SECURITY_SCHEMES;
type SecurityRequirement = Partial<Record<SchemeName, string[]>>;

/** Any way to name a tenant and a principal on a JSON route. */
export const TENANT_SECURITY: SecurityRequirement[] = [
  { bearerAuth: [] },
  { apiKey: [], orgId: [], projectId: [] },
  { apiKey: [] },
  { orgId: [], projectId: [] },
];

/** {@link TENANT_SECURITY} plus the query-string credentials of routes a browser opens by URL. */
export const QUERY_SECURITY: SecurityRequirement[] = [
  ...TENANT_SECURITY,
  { streamTicket: [] },
  { queryToken: [] },
  { queryApiKey: [] },
];

// ---------------------------------------------------------------------------------------------
// Error responses

/** HTTP statuses a route may answer with the standard error body. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 500 | 503 | 504;

/**
 * The response map of the given error statuses, each the standard error body. Routes spread it
 * into `schema.response`; {@link finishDocument} replaces each with a named response.
 */
export function errorResponses(...statuses: ErrorStatus[]): Record<number, typeof ErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorBody]));
}

/** What every authenticated route may answer: bad tenant, credentials, roles, rate limit, 500. */
export const AUTH_ERRORS: ErrorStatus[] = [400, 401, 403, 429, 500];
/** What a route with a JSON body may answer besides {@link AUTH_ERRORS}. */
export const BODY_ERRORS: ErrorStatus[] = [...AUTH_ERRORS, 413, 415];
/** The failure answers of the writing endpoints (nothing stored / may be stored). */
export const WRITE_ERRORS: ErrorStatus[] = [503, 504];

/**
 * The codes each status is answered with over HTTP (the catalogue also holds codes that only
 * appear inside reports or SSE `error` events: `CURSOR_EXPIRED`, `HANDLER_FAILED`, …).
 */
const HTTP_CODES: ErrorCode[] = [
  "VALIDATION_FAILED",
  "MALFORMED_JSON",
  "INVALID_TENANT",
  "UNKNOWN_COMMAND_TYPE",
  "RISK_LOWERING_FORBIDDEN",
  "UNAUTHENTICATED",
  "TENANT_MISMATCH",
  "FORBIDDEN",
  "SELF_APPROVAL_FORBIDDEN",
  "NOT_FOUND",
  "ASK_NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "ASK_ALREADY_DECIDED",
  "ASK_EXPIRED",
  "ACTION_CHANGED",
  "PAYLOAD_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "RATE_LIMITED",
  "INTERNAL",
  "DEPENDENCY_UNAVAILABLE",
  "ACCEPT_UNCONFIRMED",
];

const RESPONSE_NAMES: Record<ErrorStatus, [string, string]> = {
  400: ["BadRequest", "The request is invalid (body, parameters or tenant); nothing was accepted."],
  401: ["Unauthorized", "Missing or invalid credentials."],
  403: ["Forbidden", "The tenant does not match the credentials, or the principal's roles do not allow this."],
  404: ["NotFound", "No such resource for this tenant (another tenant's is indistinguishable from none)."],
  409: ["Conflict", "The request conflicts with what is stored; nothing changed."],
  413: ["PayloadTooLarge", "The body is larger than the limit (2 MiB JSON; 5 MiB photo)."],
  415: ["UnsupportedMediaType", "The content type is not JSON (or multipart/form-data for the photo)."],
  429: [
    "TooManyRequests",
    "Rate limited (per tenant and principal), too many open streams, or too many failed logins.",
  ],
  500: ["InternalError", "A defect. No input is meant to produce it; the body never carries internals."],
  503: ["DependencyUnavailable", "Nothing was stored and the request will never take effect. Retrying is safe."],
  504: [
    "AcceptUnconfirmed",
    "The write left but its confirmation did not arrive: it may take effect. Repeat the same request to learn the outcome (202 or 409); the stream is the truth.",
  ],
};

// ---------------------------------------------------------------------------------------------
// Named schemas

const pascal = (s: string) =>
  s
    .split(/[._-]/)
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join("");

const ClientContext = z
  .object({ surface: z.string().max(100).optional(), correlation_id: CorrelationId.optional() })
  .passthrough();

const commandExample = {
  command_id: "5b2f6c1e-8f0a-4c55-9d0e-2a1c3e4f5a6b",
  type: "draft_email.create",
  context: { ref: "mail:thread/123", title: "Reply to vendor" },
  params: { to: "kim@example.com", brief: "Politely decline the offer" },
  client_context: { surface: "sidecar", correlation_id: "c-001" },
};

/** One canonical command body per registered type: `params` typed by the type's schema. */
const COMMAND_VARIANTS = Object.values(COMMAND_TYPES).map((spec) =>
  z
    .object({
      command_id: CommandId.optional().describe("The idempotency key (a UUID by default); generated when absent"),
      type: z.literal(spec.type),
      context: z.record(z.string(), z.unknown()).optional().describe("Where the command comes from (free form)"),
      params: spec.params,
      client_context: ClientContext.optional(),
    })
    .meta({
      id: `${pascal(spec.type)}Command`,
      description: `\`${spec.type}\` (${spec.title}), default risk ${spec.risk}.`,
    }),
);

/**
 * The canonical `POST /sidecar/command` body, discriminated by `type` (documentation only: the
 * route accepts any object and checks the dialect and the type's params itself, so each failure
 * gets its precise code).
 */
export const CommandDoc = z
  .discriminatedUnion("type", COMMAND_VARIANTS as unknown as [z.ZodObject, ...z.ZodObject[]])
  .meta({
    id: "Command",
    description:
      "A command (LOCKED). `command_id` is the idempotency key: the same id and body again answers the same 202 and runs once; another body answers 409 IDEMPOTENCY_CONFLICT. Missing ids are generated and returned.",
    examples: [commandExample],
  });

/** `GET /agent/reports/stream` query parameters (documentation only: the stream service checks them). */
const StreamQuery = z.object({
  cursor: z
    .string()
    .optional()
    .describe(
      "Resume after this report_id (a decimal JetStream sequence). The Last-Event-ID header wins when both are sent.",
    ),
  org_id: z.string().optional().describe("The tenant, for EventSource (which cannot send headers)"),
  project_id: z.string().optional().describe("The tenant, for EventSource"),
});

/** Extra SSE event schemas other branches may add to the contracts (picked up when present). */
const optional = contracts as unknown as Partial<Record<"ProgressEvent", z.ZodType>>;

const reportName = (t: string) => `${pascal(t)}Report`;

const NAMED: [z.ZodType, string, Json?][] = [
  [Tenant, "Tenant"],
  [ErrorCode, "ErrorCode", { description: "The closed catalogue of error codes (UPPER_SNAKE)." }],
  [ErrorDetail, "ErrorDetail"],
  [ApiError, "ApiError", { description: "An error: the inner object of the standard error body and of SSE `error`." }],
  [
    ErrorBody,
    "ErrorBody",
    {
      description: "The standard error body of every non-2xx answer.",
      examples: [
        {
          error: {
            code: "VALIDATION_FAILED",
            message: "params do not fit doc.summary.create",
            recoverable: false,
            details: [{ path: "params.text", issue: "Invalid input: expected string, received undefined" }],
            stage: "validate",
          },
          correlation_id: "c-001",
        },
      ],
    },
  ],
  [RiskLevel, "RiskLevel"],
  [CommandType, "CommandType"],
  ...Object.values(COMMAND_TYPES).map((s): [z.ZodType, string] => [s.params, `${pascal(s.type)}Params`]),
  [
    LegacyCommandRequest,
    "LegacyCommand",
    {
      description:
        "The earlier backend's dialect `{command_type, params, correlation_id?}`, accepted and treated exactly like the canonical one.",
      deprecated: true,
      examples: [{ command_type: "echo.test", params: { hello: "world" }, correlation_id: "c-legacy" }],
    },
  ],
  [
    CommandAccepted,
    "CommandAccepted",
    {
      description:
        "202: durably accepted (JetStream PubAck), nothing more; every report about the command, `command.accepted` first, comes on the stream from the command-worker (follow it by `command_id`). `first_followup_report_id` is optional in the contract and not sent for commands.",
      examples: [
        {
          accepted: true,
          status: "accepted",
          command_id: "5b2f6c1e-8f0a-4c55-9d0e-2a1c3e4f5a6b",
          correlation_id: "c-001",
        },
      ],
    },
  ],
  [
    DecideRequest,
    "DecideRequest",
    {
      description:
        "A decision on an ask. Older clients' `deny` (for reject) and `reason` (for note) are accepted. `action_hash`, when sent, must equal the ask's (else 409 ACTION_CHANGED).",
      examples: [{ decision: "approve", correlation_id: "c-002", note: "ok to send" }],
    },
  ],
  [
    DecisionAccepted,
    "DecisionAccepted",
    {
      description: "202: the decision is stored in the ask's register; confirmation comes as ask.* reports.",
      examples: [{ accepted: true, status: "accepted", first_followup_report_id: "4720", correlation_id: "c-002" }],
    },
  ],
  [ProfilePatch, "ProfilePatch"],
  [PersonaPatch, "PersonaPatch"],
  [SkinPatch, "SkinPatch"],
  [CompliancePatch, "CompliancePatch"],
  [
    SettingsAccepted,
    "SettingsAccepted",
    {
      description: "202: committed; confirmed by a `settings.updated` report with the same correlation id.",
      examples: [{ accepted: true, correlation_id: "c-003", first_followup_report_id: "4730" }],
    },
  ],
  [Causality, "Causality"],
  [AskAction, "AskAction"],
  [Ask, "Ask"],
  ...AgentReport.options.map((o): [z.ZodType, string] => [o, reportName(o.shape.type.value)]),
  [
    AgentReport,
    "AgentReport",
    { description: "A report, discriminated by `type`; unknown later types must be ignored." },
  ],
  [ReportEvent, "ReportEvent", { description: "`data` of an SSE `report` event (its `id:` is `report_id`)." }],
  [WorklogEntry, "WorklogEntry"],
  [Autopilot, "Autopilot"],
  [PhotoInfo, "PhotoInfo"],
  [Profile, "Profile"],
  [Persona, "Persona"],
  [Skin, "Skin"],
  [Compliance, "Compliance"],
  [Snapshot, "Snapshot", { description: "The tenant's state at one report_id." }],
  [SnapshotEvent, "SnapshotEvent", { description: "`data` of an SSE `snapshot` event (its `id:` is `report_id`)." }],
  [PingEvent, "PingEvent", { description: "`data` of an SSE `ping` event (no `id:`)." }],
  [ErrorEvent, "ErrorEvent", { description: "`data` of an SSE `error` event (no `id:`)." }],
  ...(optional.ProgressEvent
    ? [
        [
          optional.ProgressEvent,
          "ProgressEvent",
          { description: "`data` of an SSE `progress` event: live only, no `id:`, never replayed." },
        ] as [z.ZodType, string, Json],
      ]
    : []),
];

let registered = false;

/**
 * Gives every shape of {@link NAMED} its component name in zod's global registry (once per
 * process; later calls do nothing).
 */
export function registerOpenApiSchemas(): void {
  if (registered) return;
  registered = true;
  for (const [schema, id, meta] of NAMED) {
    const prev = z.globalRegistry.get(schema);
    if (prev?.id) continue;
    z.globalRegistry.remove(schema);
    z.globalRegistry.add(schema, { ...prev, ...meta, id });
  }
}

// ---------------------------------------------------------------------------------------------
// Document post-processing

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** The SSE events of the report stream, as `{event, id?, retry?, data}` frames. */
function sseFrames(): { schemas: Record<string, Json>; oneOf: Json[] } {
  const frame = (event: string, data: string, withId: boolean, description: string): Json => ({
    type: "object",
    description,
    properties: {
      event: { type: "string", const: event },
      ...(withId ? { id: { type: "string", pattern: "^(0|[1-9][0-9]{0,15})$", description: "The report_id" } } : {}),
      data: { ...ref(data), description: "One line of JSON (contentMediaType application/json)" },
    },
    required: ["event", "data", ...(withId ? ["id"] : [])],
  });
  const schemas: Record<string, Json> = {
    SnapshotFrame: frame(
      "snapshot",
      "SnapshotEvent",
      true,
      "First on a connection without a valid cursor: the state at report_id W; every later report follows.",
    ),
    ReportFrame: frame("report", "ReportEvent", true, "One report, in report_id order; dedupe by report_id."),
    PingFrame: frame("ping", "PingEvent", false, "Heartbeat every SSE_HEARTBEAT_MS (15 s); never moves Last-Event-ID."),
    ErrorFrame: frame(
      "error",
      "ErrorEvent",
      false,
      "CURSOR_EXPIRED (recoverable; a fresh snapshot follows), CREDENTIAL_EXPIRED (re-authenticate and resume), DEPENDENCY_UNAVAILABLE (the connection ends; reconnect).",
    ),
  };
  if (optional.ProgressEvent)
    schemas.ProgressFrame = frame(
      "progress",
      "ProgressEvent",
      false,
      "Live progress of a long command (no id, not replayed); the completing report carries the result.",
    );
  return { schemas, oneOf: Object.keys(schemas).map(ref) };
}

const SSE_EXAMPLE = [
  `retry: ${SSE_RETRY_MS}`,
  "",
  "event: snapshot",
  "id: 4710",
  'data: {"snapshot":{"autopilot":{"status":"idle","in_flight":0},"worklog":[],"asks":[],"profile":{},"assistant":{"persona":{},"skin":{}},"compliance":{"risk_overrides":{},"policy_version":0}},"report_id":"4710","tenant":{"org_id":"acme","project_id":"nexus"},"ts":"2026-02-03T09:00:00.000Z"}',
  "",
  "event: report",
  "id: 4711",
  'data: {"report":{"type":"command.accepted","status":"accepted","title":"Draft email","command":{"command_id":"5b2f6c1e-8f0a-4c55-9d0e-2a1c3e4f5a6b","type":"draft_email.create"},"risk_level":"GREEN"},"causality":{"correlation_id":"c-001","command_id":"5b2f6c1e-8f0a-4c55-9d0e-2a1c3e4f5a6b"},"tenant":{"org_id":"acme","project_id":"nexus"},"ts":"2026-02-03T09:00:01.000Z","report_id":"4711"}',
  "",
  "event: ping",
  'data: {"ts":"2026-02-03T09:00:16.000Z"}',
  "",
  "",
].join("\n");

const jsonSchemaOf = (s: z.ZodType, io: "input" | "output") => {
  const out = z.toJSONSchema(s, { target: "draft-2020-12", io, unrepresentable: "any" }) as Json;
  delete out.$schema;
  return out;
};

/** Parameters of the query-string routes (the tenant for EventSource / <img>). */
function queryParameters(withCursor: boolean): Json[] {
  const props = jsonSchemaOf(StreamQuery, "input").properties as Record<string, Json>;
  return Object.entries(props)
    .filter(([name]) => withCursor || name !== "cursor")
    .map(([name, schema]) => ({
      name,
      in: "query",
      required: false,
      description: schema.description,
      schema: { type: "string" },
    }));
}

/** What a route definition cannot say, by operationId. */
function operationOverrides(): Record<string, (op: Json) => void> {
  return {
    sendCommand(op) {
      op.requestBody = {
        required: true,
        description: "A command in the canonical dialect, or the earlier backend's (deprecated).",
        content: {
          "application/json": {
            schema: { oneOf: [ref("CommandInput"), ref("LegacyCommandInput")] },
            examples: {
              canonical: { summary: "A GREEN command", value: commandExample },
              red: {
                summary: "A RED command: creates an ask",
                value: {
                  type: "external_share.prepare",
                  params: {
                    recipient: "partner@example.org",
                    channel: "email",
                    resource: { ref: "doc:42", title: "Q3 plan" },
                    message: "FYI",
                  },
                  client_context: { correlation_id: "c-share" },
                },
              },
              legacy: {
                summary: "The earlier backend's dialect",
                value: { command_type: "echo.test", params: { hello: "world" }, correlation_id: "c-legacy" },
              },
            },
          },
        },
      };
    },
    streamReports(op) {
      op.description =
        "Server-Sent Events (LOCKED). The first bytes are `retry: 3000`. Without a cursor: one `snapshot` (id W), then every report after W, live. With a cursor (Last-Event-ID header, else `?cursor=`) still inside retention: no snapshot, every report after it in order, without gap or duplicate, then live. An invalid, expired or future cursor: `error` CURSOR_EXPIRED, then a fresh `snapshot`. `ping` every 15 s. Only `snapshot` and `report` carry `id:`. Proxied to the stream service.";
      op.parameters = [
        {
          name: "Last-Event-ID",
          in: "header",
          required: false,
          description: "The last report_id the client applied (EventSource sends it on reconnect).",
          schema: { type: "string" },
        },
        ...queryParameters(true),
      ];
      const responses = op.responses as Record<string, Json>;
      responses["200"] = {
        description:
          "An endless text/event-stream. Each frame is `event:`, optional `id:`, one `data:` line of JSON, and a blank line.",
        content: {
          "text/event-stream": {
            schema: { ...ref("ReportStreamFrame") },
            example: SSE_EXAMPLE,
          },
        },
      };
    },
    getProfilePhoto(op) {
      op.parameters = queryParameters(false);
      (op.responses as Record<string, Json>)["200"] = {
        description: "The image bytes (cached privately for 5 minutes; ETag is the SHA-256).",
        content: Object.fromEntries(
          ["image/png", "image/jpeg", "image/webp"].map((t) => [
            t,
            { schema: { type: "string", contentMediaType: t } },
          ]),
        ),
      };
    },
    uploadProfilePhoto(op) {
      op.requestBody = {
        required: true,
        content: {
          "multipart/form-data": {
            schema: {
              type: "object",
              properties: {
                photo: {
                  type: "string",
                  contentMediaType: "application/octet-stream",
                  description: "One PNG, JPEG or WebP image (judged by its bytes, not its name), at most 5 MiB",
                },
              },
              required: ["photo"],
            },
          },
        },
      };
    },
  };
}

/** Collects every `$ref` target name under `node`. */
function refsIn(node: unknown, out: Set<string>): Set<string> {
  if (Array.isArray(node)) for (const x of node) refsIn(x, out);
  else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string") out.add(v.replace(/^#\/components\/schemas\//, ""));
      else refsIn(v, out);
    }
  }
  return out;
}

/** Replaces `$ref`s to `from` by `to` everywhere under `node`. */
function renameRefs(node: unknown, from: string, to: string): void {
  if (Array.isArray(node)) for (const x of node) renameRefs(x, from, to);
  else if (node && typeof node === "object") {
    const o = node as Json;
    if (o.$ref === `#/components/schemas/${from}`) o.$ref = `#/components/schemas/${to}`;
    for (const v of Object.values(o)) renameRefs(v, from, to);
  }
}

/** Response objects are open to fields added later (LOCKED rule: clients ignore unknown fields). */
function openObjects(node: unknown): void {
  if (Array.isArray(node)) for (const x of node) openObjects(x);
  else if (node && typeof node === "object") {
    const o = node as Json;
    if (o.additionalProperties === false) delete o.additionalProperties;
    for (const v of Object.values(o)) openObjects(v);
  }
}

const STATUS_TEXT: Record<string, string> = { "200": "OK", "201": "Created", "202": "Accepted", "204": "No Content" };

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/**
 * The `transformObject` hook of `@fastify/swagger`: the document from the routes, completed
 * (see the module doc).
 */
export const finishDocument: FastifyDynamicSwaggerOptions["transformObject"] = (input) => {
  const doc = jsonSchemaTransformObject(input) as unknown as Json & {
    paths: Record<string, Record<string, Json>>;
    components: { schemas: Record<string, Json>; responses?: Json; parameters?: Json };
  };
  const schemas = doc.components.schemas;
  // Component schemas are plain schemas of the document: no dialect or id of their own.
  for (const s of Object.values(schemas)) {
    delete s.$schema;
    delete s.$id;
  }
  const frames = sseFrames();
  Object.assign(schemas, frames.schemas, {
    ReportStreamFrame: {
      description:
        "One Server-Sent Events frame of GET /agent/reports/stream. Unknown event names must be ignored (events are added, never renamed).",
      oneOf: frames.oneOf,
    },
  });

  const overrides = operationOverrides();
  const usedStatuses = new Set<ErrorStatus>();
  for (const item of Object.values(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const id = op.operationId as string | undefined;
      if (id && overrides[id]) overrides[id](op);
      const responses = (op.responses ?? {}) as Record<string, Json>;
      for (const [status, r] of Object.entries(responses)) {
        const s = Number(status) as ErrorStatus;
        if (RESPONSE_NAMES[s] && JSON.stringify(r).includes("ErrorBody")) {
          usedStatuses.add(s);
          responses[status] = { $ref: `#/components/responses/${RESPONSE_NAMES[s][0]}` };
        } else if (r.description === "Default Response") {
          const target = JSON.stringify(r).match(/#\/components\/schemas\/([A-Za-z]+)"/)?.[1];
          const described = target ? (schemas[target]?.description as string | undefined) : undefined;
          r.description = described ?? STATUS_TEXT[status] ?? "Answer";
        }
        openObjects(responses[status]);
      }
      const security = op.security as SecurityRequirement[] | undefined;
      if (security?.some((r) => r.orgId)) {
        op.parameters = [
          ...((op.parameters as Json[]) ?? []),
          { $ref: "#/components/parameters/XUserId" },
          { $ref: "#/components/parameters/XRoles" },
        ];
      }
    }
  }

  doc.components.responses = Object.fromEntries(
    [...usedStatuses]
      .sort((a, b) => a - b)
      .map((s) => {
        const [name, description] = RESPONSE_NAMES[s];
        const codes = HTTP_CODES.filter((c) => errorSpec(c).status === s);
        return [
          name,
          {
            description: `${description} Codes: ${codes.join(", ")}.`,
            content: {
              "application/json": {
                schema: ref("ErrorBody"),
                examples: Object.fromEntries(
                  codes.map((c) => [
                    c,
                    {
                      summary: errorSpec(c).message,
                      value: { error: contracts.apiError(c), correlation_id: "c-001" },
                    },
                  ]),
                ),
              },
            },
          },
        ];
      }),
  );
  doc.components.parameters = {
    XUserId: {
      name: "x-user-id",
      in: "header",
      required: false,
      description:
        "Header mode only (trusted network): the principal, 1-128 printable characters; `anonymous` when absent.",
      schema: { type: "string", pattern: "^[\\x21-\\x7e]{1,128}$" },
    },
    XRoles: {
      name: "x-roles",
      in: "header",
      required: false,
      description:
        "Header mode only (trusted network): comma-separated roles (viewer, operator, approver, admin); `admin` when absent.",
      schema: { type: "string", example: "operator,approver" },
    },
  };

  // Output-side schemas are open to additive fields; then merge input variants equal to their
  // output twin, drop what nothing refers to, and give lone input variants the plain name.
  for (const [name, s] of Object.entries(schemas)) if (!name.endsWith("Input")) openObjects(s);
  for (const name of Object.keys(schemas)) {
    if (!name.endsWith("Input")) continue;
    const plain = name.slice(0, -"Input".length);
    if (schemas[plain] && JSON.stringify(schemas[plain]) === JSON.stringify(schemas[name])) {
      renameRefs(doc, name, plain);
      delete schemas[name];
    }
  }
  const reachable = new Set<string>();
  const queue = [...refsIn({ paths: doc.paths, r: doc.components.responses }, new Set())];
  while (queue.length) {
    const n = queue.pop() as string;
    if (reachable.has(n) || !schemas[n]) continue;
    reachable.add(n);
    queue.push(...refsIn(schemas[n], new Set()));
  }
  for (const name of Object.keys(schemas)) if (!reachable.has(name)) delete schemas[name];
  for (const name of Object.keys(schemas)) {
    const plain = name.endsWith("Input") ? name.slice(0, -"Input".length) : undefined;
    if (plain && !schemas[plain]) {
      schemas[plain] = schemas[name] as Json;
      delete schemas[name];
      renameRefs(doc, name, plain);
    }
  }
  doc.components.schemas = Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => (a < b ? -1 : 1)));
  return doc as unknown as ReturnType<NonNullable<FastifyDynamicSwaggerOptions["transformObject"]>>;
};

/** The options of `@fastify/swagger` for the gateway. */
export function swaggerOptions(version: string): FastifyDynamicSwaggerOptions {
  registerOpenApiSchemas();
  return {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "NEXUS Console API",
        version,
        description: [
          "Commands, approvals and settings for the NEXUS agent console, and one ordered, replayable report stream per tenant.",
          "",
          "- A `202` means durably accepted, never done: results arrive as reports on `GET /agent/reports/stream`.",
          "- `503 DEPENDENCY_UNAVAILABLE`: nothing was stored, it never takes effect. `504 ACCEPT_UNCONFIRMED`: it may take effect; repeat the same request to learn the outcome.",
          "- Every error has the standard body `{ error: { code, message, recoverable, details?, stage? }, correlation_id }`.",
          "- A tenant is (`org_id`, `project_id`); another tenant's resources are indistinguishable from missing ones.",
          "",
          "The repository's docs/contract.md is the full contract; docs/asyncapi.yaml describes the SSE events and the NATS subjects.",
        ].join("\n"),
      },
      tags: [
        { name: "commands", description: "Send commands (LOCKED)" },
        { name: "approvals", description: "Decide asks held for a human (LOCKED)" },
        { name: "settings", description: "Profile, assistant persona and skin, compliance (admin)" },
        { name: "stream", description: "The report stream (LOCKED) and its tickets" },
        { name: "admin", description: "API keys" },
      ],
      components: { securitySchemes: SECURITY_SCHEMES as unknown as Record<string, never> },
    },
    transform: createJsonSchemaTransform({}),
    transformObject: finishDocument,
  };
}

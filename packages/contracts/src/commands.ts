import { z } from "zod";

/** Risk levels, ordered GREEN < YELLOW < RED (docs/contract.md "Command types"). */
export const RiskLevel = z.enum(["GREEN", "YELLOW", "RED"]);
export type RiskLevel = z.infer<typeof RiskLevel>;

const RISK_ORDER: Record<RiskLevel, number> = { GREEN: 0, YELLOW: 1, RED: 2 };

/** Compares risk levels: negative when `a` is lower than `b`. */
export function compareRisk(a: RiskLevel, b: RiskLevel): number {
  return RISK_ORDER[a] - RISK_ORDER[b];
}

/** The higher of two risk levels. */
export function maxRisk(a: RiskLevel, b: RiskLevel): RiskLevel {
  return compareRisk(a, b) >= 0 ? a : b;
}

const utf8 = new TextEncoder();
/** 1 MiB, the limit on `doc.summary.create` `text` in UTF-8 bytes. */
export const MAX_SUMMARY_TEXT_BYTES = 1024 * 1024;

/** An ISO 8601 date-time with an explicit offset (`2026-02-03T09:00:00Z`, `…+01:00`). */
export const IsoDateTime = z.iso.datetime({ offset: true });

/** An IANA time zone name that this runtime's ICU knows (`Europe/Berlin`, `UTC`). */
export const TimeZone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { message: "must be an IANA time zone such as Europe/Berlin" },
);

const Interval = z
  .object({ start: IsoDateTime, end: IsoDateTime })
  .refine((i) => Date.parse(i.end) > Date.parse(i.start), { message: "end must be after start" });

const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "must be HH:MM (24 h)");

/** `draft_email.create` params. */
export const DraftEmailParams = z.object({
  to: z.email().optional(),
  subject: z.string().min(1).max(200).optional(),
  brief: z.string().min(1).max(4000),
  tone: z.enum(["neutral", "friendly", "formal", "firm", "apologetic"]).optional(),
  language: z
    .string()
    .regex(/^[a-z]{2}(-[A-Z]{2})?$/, "must be a language tag such as en or de-DE")
    .optional(),
});
export type DraftEmailParams = z.infer<typeof DraftEmailParams>;
/**
 * Who wrote a result: `provider` is the provider's name (`openai`, `anthropic`, `gemini`, or
 * `offline` for the embedded template/extractive path), `model` the model id when a language
 * model wrote it. Always set by this version; optional so that results stored by earlier
 * versions keep parsing.
 */
const Authorship = {
  provider: z.string().optional(),
  model: z.string().optional(),
};

/**
 * `draft_email.create` result: `{ subject, body, language, provider, model? }` (docs/contract.md).
 * `language` is the draft's language tag (`en`, `ko`, `de`, …): the brief's language when it
 * can be told (Hangul → `ko`), else `params.language`, else the tenant profile's locale.
 */
export const DraftEmailResult = z.object({
  subject: z.string(),
  body: z.string(),
  language: z.string().optional(),
  ...Authorship,
});
export type DraftEmailResult = z.infer<typeof DraftEmailResult>;

/** `prep_pack.create` params. */
export const PrepPackParams = z.object({
  meeting_title: z.string().min(1).max(200),
  attendees: z.array(z.string().min(1).max(200)).min(1).max(100),
  agenda: z.array(z.string().min(1).max(500)).min(1).max(50),
  docs: z
    .array(
      z.union([z.string().min(1).max(500), z.object({ ref: z.string().min(1), title: z.string().min(1).max(200) })]),
    )
    .max(50)
    .optional(),
});
export type PrepPackParams = z.infer<typeof PrepPackParams>;
/** `prep_pack.create` result; `talking_points` (one or more per agenda item) was added later and is optional. */
export const PrepPackResult = z.object({
  checklist: z.array(z.string()),
  summary: z.string(),
  talking_points: z.array(z.string()).optional(),
  language: z.string().optional(),
  ...Authorship,
});
export type PrepPackResult = z.infer<typeof PrepPackResult>;

/** `doc.summary.create` params; `text` is at most 1 MiB of UTF-8. */
export const DocSummaryParams = z.object({
  text: z
    .string()
    .min(1)
    .refine((t) => utf8.encode(t).byteLength <= MAX_SUMMARY_TEXT_BYTES, { message: "must be at most 1 MiB of UTF-8" }),
  max_sentences: z.number().int().min(1).max(20).optional(),
});
export type DocSummaryParams = z.infer<typeof DocSummaryParams>;
/**
 * `doc.summary.create` result: `sentences` in order, `summary` their join. The offline path
 * extracts sentences (TextRank, document order); a language model writes them (map-reduce),
 * in the text's `language`.
 */
export const DocSummaryResult = z.object({
  summary: z.string(),
  sentences: z.array(z.string()),
  language: z.string().optional(),
  ...Authorship,
});
export type DocSummaryResult = z.infer<typeof DocSummaryResult>;

/** Working hours in the request's time zone; `days` are ISO weekdays (1 = Monday … 7 = Sunday). */
export const WorkingHours = z
  .object({
    start: HHMM,
    end: HHMM,
    days: z.array(z.number().int().min(1).max(7)).min(1).max(7).optional(),
  })
  .refine((w) => w.end > w.start, { message: "end must be after start" });
export type WorkingHours = z.infer<typeof WorkingHours>;

/** `calendar.options.create` params. Durations in minutes; instants ISO 8601 with offset. */
export const CalendarOptionsParams = z.object({
  duration_minutes: z
    .number()
    .int()
    .min(5)
    .max(24 * 60),
  window: Interval,
  busy: z.array(Interval).max(1000).default([]),
  timezone: TimeZone,
  working_hours: WorkingHours.optional(),
});
export type CalendarOptionsParams = z.infer<typeof CalendarOptionsParams>;
/** `calendar.options.create` result: exactly three conflict-free slots. */
export const CalendarOptionsResult = z.object({
  options: z.array(z.object({ start: z.string(), end: z.string() })).length(3),
});
export type CalendarOptionsResult = z.infer<typeof CalendarOptionsResult>;

/** `external_share.prepare` params. */
export const ExternalShareParams = z.object({
  recipient: z.email(),
  resource: z.object({ ref: z.string().min(1).max(500), title: z.string().min(1).max(200) }),
  channel: z.enum(["email", "link", "slack", "teams"]),
  message: z.string().max(4000).optional(),
});
export type ExternalShareParams = z.infer<typeof ExternalShareParams>;
/** Result of an executed external share. */
export const ExternalShareResult = z.object({
  share_id: z.string(),
  recipient: z.string(),
  channel: z.string(),
  resource: z.object({ ref: z.string(), title: z.string() }),
  status: z.enum(["queued", "delivered"]),
});
export type ExternalShareResult = z.infer<typeof ExternalShareResult>;

/** `echo.test` params: any object (a diagnostic for smoke tests). */
export const EchoParams = z.record(z.string(), z.unknown());
export type EchoParams = z.infer<typeof EchoParams>;
/** `echo.test` result. */
export const EchoResult = z.object({ echo: z.record(z.string(), z.unknown()) });
export type EchoResult = z.infer<typeof EchoResult>;

/** One entry of the command-type registry. */
export interface CommandTypeSpec<P extends z.ZodType = z.ZodType> {
  type: string;
  /** Default risk; a tenant may raise it, never lower it. */
  risk: RiskLevel;
  params: P;
  /** Human title used in reports (`"Draft email"`). */
  title: string;
}

/** The command-type registry (docs/contract.md table "Command types"). */
export const COMMAND_TYPES = {
  "echo.test": { type: "echo.test", risk: "GREEN", params: EchoParams, title: "Echo test" },
  "draft_email.create": { type: "draft_email.create", risk: "GREEN", params: DraftEmailParams, title: "Draft email" },
  "prep_pack.create": { type: "prep_pack.create", risk: "GREEN", params: PrepPackParams, title: "Meeting prep pack" },
  "doc.summary.create": {
    type: "doc.summary.create",
    risk: "GREEN",
    params: DocSummaryParams,
    title: "Document summary",
  },
  "calendar.options.create": {
    type: "calendar.options.create",
    risk: "GREEN",
    params: CalendarOptionsParams,
    title: "Meeting slot options",
  },
  "external_share.prepare": {
    type: "external_share.prepare",
    risk: "RED",
    params: ExternalShareParams,
    title: "External share",
  },
} as const satisfies Record<string, CommandTypeSpec>;

/** A known command type name. */
export type CommandType = keyof typeof COMMAND_TYPES;
export const CommandType = z.enum(Object.keys(COMMAND_TYPES) as [CommandType, ...CommandType[]]);

/** True when `t` names a registered command type. */
export function isCommandType(t: unknown): t is CommandType {
  return typeof t === "string" && Object.hasOwn(COMMAND_TYPES, t);
}

/** A command id (the idempotency key): 1–128 characters of `[A-Za-z0-9_:-]`, e.g. a UUID. */
export const CommandId = z.string().regex(/^[A-Za-z0-9_:-]{1,128}$/, "must be 1-128 characters of [A-Za-z0-9_:-]");
/** A correlation id chosen by the client: 1–200 printable characters. */
export const CorrelationId = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces");

/** The canonical `POST /sidecar/command` body (LOCKED). `params` is checked per type afterwards. */
export const CommandRequest = z.object({
  command_id: CommandId.optional(),
  type: z.string().min(1).max(100),
  context: z.record(z.string(), z.unknown()).optional(),
  params: z.record(z.string(), z.unknown()).default({}),
  client_context: z
    .object({ surface: z.string().max(100).optional(), correlation_id: CorrelationId.optional() })
    .passthrough()
    .optional(),
});
export type CommandRequest = z.infer<typeof CommandRequest>;

/** The older clients' dialect: `{command_type, params, correlation_id}`. */
export const LegacyCommandRequest = z.object({
  command_id: CommandId.optional(),
  command_type: z.string().min(1).max(100),
  params: z.record(z.string(), z.unknown()).default({}),
  correlation_id: CorrelationId.optional(),
  context: z.record(z.string(), z.unknown()).optional(),
});
export type LegacyCommandRequest = z.infer<typeof LegacyCommandRequest>;

/** Either dialect of `POST /sidecar/command`. */
export const AnyCommandRequest = z.union([CommandRequest, LegacyCommandRequest]);

/** A command after dialect normalisation; ids may still be missing (the gateway generates them). */
export interface NormalisedCommand {
  command_id?: string;
  type: string;
  context: Record<string, unknown>;
  params: Record<string, unknown>;
  surface?: string;
  correlation_id?: string;
}

/**
 * Normalises either dialect to one shape.
 * @throws never; returns a zod error for bodies that fit neither dialect.
 */
export function normaliseCommandRequest(
  body: unknown,
): { ok: true; command: NormalisedCommand } | { ok: false; error: z.ZodError } {
  const isLegacy = typeof body === "object" && body !== null && "command_type" in body && !("type" in body);
  if (isLegacy) {
    const r = LegacyCommandRequest.safeParse(body);
    if (!r.success) return { ok: false, error: r.error };
    return {
      ok: true,
      command: {
        command_id: r.data.command_id,
        type: r.data.command_type,
        context: r.data.context ?? {},
        params: r.data.params,
        surface: "legacy",
        correlation_id: r.data.correlation_id,
      },
    };
  }
  const r = CommandRequest.safeParse(body);
  if (!r.success) return { ok: false, error: r.error };
  return {
    ok: true,
    command: {
      command_id: r.data.command_id,
      type: r.data.type,
      context: r.data.context ?? {},
      params: r.data.params,
      surface: r.data.client_context?.surface,
      correlation_id: r.data.client_context?.correlation_id,
    },
  };
}

/** The `202` body of `POST /sidecar/command` (LOCKED). */
export const CommandAccepted = z.object({
  accepted: z.literal(true),
  status: z.literal("accepted"),
  command_id: z.string(),
  first_followup_report_id: z.string().optional(),
  correlation_id: z.string(),
});
export type CommandAccepted = z.infer<typeof CommandAccepted>;

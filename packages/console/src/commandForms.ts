/**
 * The composer's forms, as data: which fields each command type has, how their text values
 * become the type's `params`, and which field a server-side validation detail belongs to.
 * Pure (no DOM); the server validates, the console only shapes the body.
 */
import type { CommandType } from "@nexus/contracts";
import { parseBusy, splitLines, zonedLocalToIso } from "./format.ts";

/** How a field is edited. `lines` is a textarea read one item per line. */
export type FieldKind = "text" | "email" | "textarea" | "number" | "select" | "datetime" | "time" | "lines";

/** One labelled input of a command form. */
export interface FieldDef {
  /** Stable key: the input's id is `cmd-<key>` and its test id `field-<key>`. */
  key: string;
  label: string;
  kind: FieldKind;
  /** Dotted path inside `params` this field fills (`window.start`). */
  param: string;
  required?: boolean;
  /** Select options; `""` means "not set". */
  options?: readonly string[];
  hint?: string;
  placeholder?: string;
}

/** Tones accepted by `draft_email.create` and the persona. */
export const TONES = ["neutral", "friendly", "formal", "firm", "apologetic"] as const;
/** Channels of `external_share.prepare`. */
export const CHANNELS = ["email", "link", "slack", "teams"] as const;

/** The fields of each command type, in form order. */
export const COMMAND_FORMS: Record<CommandType, readonly FieldDef[]> = {
  "echo.test": [{ key: "message", label: "Message", kind: "text", param: "message", hint: "Echoed back unchanged" }],
  "draft_email.create": [
    { key: "to", label: "To", kind: "email", param: "to", placeholder: "kim@example.com" },
    { key: "subject", label: "Subject", kind: "text", param: "subject" },
    {
      key: "brief",
      label: "Brief",
      kind: "textarea",
      param: "brief",
      required: true,
      hint: "What the email should say",
    },
    { key: "tone", label: "Tone", kind: "select", param: "tone", options: ["", ...TONES] },
    {
      key: "language",
      label: "Language",
      kind: "text",
      param: "language",
      placeholder: "en",
      hint: "e.g. en or de-DE",
    },
  ],
  "prep_pack.create": [
    { key: "meeting_title", label: "Meeting title", kind: "text", param: "meeting_title", required: true },
    { key: "attendees", label: "Attendees", kind: "lines", param: "attendees", required: true, hint: "One per line" },
    { key: "agenda", label: "Agenda", kind: "lines", param: "agenda", required: true, hint: "One item per line" },
    { key: "docs", label: "Documents", kind: "lines", param: "docs", hint: "One per line (optional)" },
  ],
  "doc.summary.create": [
    { key: "text", label: "Text", kind: "textarea", param: "text", required: true },
    { key: "max_sentences", label: "Max sentences", kind: "number", param: "max_sentences", hint: "1–20 (optional)" },
  ],
  "calendar.options.create": [
    { key: "duration_minutes", label: "Duration (minutes)", kind: "number", param: "duration_minutes", required: true },
    { key: "window_start", label: "Window start", kind: "datetime", param: "window.start", required: true },
    { key: "window_end", label: "Window end", kind: "datetime", param: "window.end", required: true },
    {
      key: "busy",
      label: "Busy intervals",
      kind: "lines",
      param: "busy",
      hint: "One per line: start/end in ISO 8601, e.g. 2026-02-03T09:00:00Z/2026-02-03T10:00:00Z",
    },
    {
      key: "timezone",
      label: "Time zone",
      kind: "text",
      param: "timezone",
      required: true,
      hint: "IANA name, e.g. Europe/Berlin",
    },
    { key: "working_hours_start", label: "Working hours start", kind: "time", param: "working_hours.start" },
    { key: "working_hours_end", label: "Working hours end", kind: "time", param: "working_hours.end" },
  ],
  "external_share.prepare": [
    { key: "recipient", label: "Recipient", kind: "email", param: "recipient", required: true },
    {
      key: "resource_ref",
      label: "Resource reference",
      kind: "text",
      param: "resource.ref",
      required: true,
      placeholder: "drive:file/123",
    },
    { key: "resource_title", label: "Resource title", kind: "text", param: "resource.title", required: true },
    { key: "channel", label: "Channel", kind: "select", param: "channel", options: CHANNELS, required: true },
    { key: "message", label: "Message", kind: "textarea", param: "message" },
  ],
};

/** Details about an object as a whole (a refine on `window`) are shown at this field. */
const OBJECT_FIELD: Record<string, string> = {
  window: "window_end",
  working_hours: "working_hours_end",
  resource: "resource_ref",
};

/** Text values of one form, by field key. */
export type FormValues = Record<string, string>;

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

function localDateTime(d: Date, hh: number): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(hh)}:00`;
}

/**
 * Default values of a type's form: a 30-minute slot search from tomorrow 09:00 to four days
 * later 17:00 in time zone `timezone`; `email` as the share channel.
 */
export function defaultValues(type: CommandType, timezone: string, now: Date = new Date()): FormValues {
  if (type === "calendar.options.create") {
    const start = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
    const end = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 4);
    return {
      duration_minutes: "30",
      window_start: localDateTime(start, 9),
      window_end: localDateTime(end, 17),
      timezone,
    };
  }
  if (type === "external_share.prepare") return { channel: "email" };
  return {};
}

const str = (v: string | undefined) => (v ?? "").trim();
/** A number when the text is one, else the text itself (so the server's validation names it). */
const num = (v: string | undefined): number | string => {
  const t = str(v);
  const n = Number(t);
  return t !== "" && Number.isFinite(n) ? n : t;
};

/**
 * Builds the `params` of `type` from the form's text values. Empty optional fields are left
 * out; nothing is validated here (the gateway answers `400 VALIDATION_FAILED` with details).
 * Calendar window times are wall-clock times in the form's own time zone field.
 */
export function buildParams(type: CommandType, v: FormValues): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  const opt = (key: string, value: unknown) => {
    if (value !== "" && value !== undefined) p[key] = value;
  };
  switch (type) {
    case "echo.test":
      opt("message", str(v.message));
      return p;
    case "draft_email.create":
      opt("to", str(v.to));
      opt("subject", str(v.subject));
      p.brief = str(v.brief);
      opt("tone", str(v.tone));
      opt("language", str(v.language));
      return p;
    case "prep_pack.create":
      p.meeting_title = str(v.meeting_title);
      p.attendees = splitLines(v.attendees ?? "");
      p.agenda = splitLines(v.agenda ?? "");
      if (splitLines(v.docs ?? "").length > 0) p.docs = splitLines(v.docs ?? "");
      return p;
    case "doc.summary.create":
      p.text = v.text ?? "";
      opt("max_sentences", str(v.max_sentences) === "" ? "" : num(v.max_sentences));
      return p;
    case "calendar.options.create": {
      const tz = str(v.timezone);
      const toIso = (local: string | undefined) => zonedLocalToIso(str(local), tz || "UTC") ?? str(local);
      p.duration_minutes = num(v.duration_minutes);
      p.window = { start: toIso(v.window_start), end: toIso(v.window_end) };
      p.busy = parseBusy(v.busy ?? "");
      p.timezone = tz;
      const whs = str(v.working_hours_start);
      const whe = str(v.working_hours_end);
      if (whs !== "" || whe !== "") p.working_hours = { start: whs, end: whe };
      return p;
    }
    case "external_share.prepare":
      p.recipient = str(v.recipient);
      p.resource = { ref: str(v.resource_ref), title: str(v.resource_title) };
      p.channel = str(v.channel);
      opt("message", v.message ?? "");
      return p;
  }
}

/**
 * The key of the field a validation detail's `path` (`params.window.start`,
 * `params.busy.0.end`, `params.resource`) belongs to, or `null` when none does.
 */
export function fieldForPath(type: CommandType, path: string): string | null {
  if (!path.startsWith("params.") && path !== "params") return null;
  const p = path.slice("params.".length);
  let best: FieldDef | null = null;
  for (const f of COMMAND_FORMS[type]) {
    if ((p === f.param || p.startsWith(`${f.param}.`)) && (!best || f.param.length > best.param.length)) best = f;
  }
  if (best) return best.key;
  const head = p.split(".")[0] ?? "";
  return OBJECT_FIELD[head] && COMMAND_FORMS[type].some((f) => f.key === OBJECT_FIELD[head])
    ? OBJECT_FIELD[head]!
    : null;
}

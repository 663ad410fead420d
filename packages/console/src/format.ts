/**
 * Pure formatting and form-conversion helpers (no DOM), shared by the components and tested
 * in `format.test.ts`.
 */
import type { ReportEvent } from "@nexus/contracts";

/** True when this runtime's ICU knows the IANA zone `tz`. */
export function isTimeZone(tz: string | undefined | null): tz is string {
  if (!tz) return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** The browser's own time zone (`UTC` if it cannot tell). */
export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** The zone to show times in: the profile's when valid, else the browser's. */
export function effectiveTimeZone(profileTz?: string | null): string {
  return isTimeZone(profileTz) ? profileTz : browserTimeZone();
}

/** A locale Intl accepts: the profile's when valid, else `undefined` (the browser's). */
export function effectiveLocale(profileLocale?: string | null): string | undefined {
  if (!profileLocale) return undefined;
  try {
    return Intl.DateTimeFormat.supportedLocalesOf([profileLocale]).length > 0 ? profileLocale : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Formats an ISO instant as date and time in `tz` (e.g. `3 Feb 2026, 10:00 CET`).
 * Returns the input unchanged when it is not a date.
 */
export function formatInstant(iso: string, tz: string, locale?: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return new Intl.DateTimeFormat(locale, {
    dateStyle: "medium",
    timeStyle: "short",
    timeZone: tz,
  }).format(t);
}

/** Formats a time of day only (for the worklog's compact timestamps). */
export function formatTime(iso: string, tz: string, locale?: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return new Intl.DateTimeFormat(locale, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZone: tz,
  }).format(t);
}

/**
 * Formats a slot `[start, end)` in `tz`, e.g. `Tue, Feb 3, 2026, 10:00 – 10:30 AM GMT+1`.
 * Uses `formatRange` so a same-day range names the day once.
 */
export function formatSlot(start: string, end: string, tz: string, locale?: string): string {
  const a = Date.parse(start);
  const b = Date.parse(end);
  if (Number.isNaN(a) || Number.isNaN(b)) return `${start} – ${end}`;
  const f = new Intl.DateTimeFormat(locale, {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: tz,
    timeZoneName: "short",
  });
  return typeof f.formatRange === "function" ? f.formatRange(a, b) : `${f.format(a)} – ${f.format(b)}`;
}

/** Offset of `tz` from UTC at instant `t`, in milliseconds (positive east of Greenwich). */
export function zoneOffsetMs(t: number, tz: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: tz,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(t);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return asUtc - (t - (t % 1000));
}

/**
 * Converts a wall-clock time as typed into `<input type="datetime-local">` (`2026-02-03T09:00`)
 * in zone `tz` to an ISO 8601 instant in UTC (`2026-02-03T08:00:00.000Z` for Europe/Berlin).
 * Returns `null` for an empty or malformed value. For a wall time that a DST change skips or
 * repeats, the result is one of the candidate instants.
 */
export function zonedLocalToIso(local: string, tz: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(local.trim());
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m;
  const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s ?? 0));
  // First guess with the offset at the wall time read as UTC, then correct once for DST edges.
  let t = wall - zoneOffsetMs(wall, tz);
  t = wall - zoneOffsetMs(t, tz);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/** A remaining duration as `2d 3h`, `1h 02m`, `4m 05s` or `0s`. */
export function formatCountdown(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${two(m)}m`;
  if (m > 0) return `${m}m ${two(sec)}s`;
  return `${sec}s`;
}

/** Non-empty, trimmed lines of a textarea. */
export function splitLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/**
 * Busy intervals typed one per line as `start/end` (ISO 8601). Lines without `/` become
 * `{start: line, end: ""}` so the server's validation names them.
 */
export function parseBusy(text: string): { start: string; end: string }[] {
  return splitLines(text).map((l) => {
    const i = l.indexOf("/");
    return i < 0 ? { start: l, end: "" } : { start: l.slice(0, i).trim(), end: l.slice(i + 1).trim() };
  });
}

/** A short sentence announcing a report in the live region, e.g. `Draft ready: command.completed`. */
export function announce(ev: ReportEvent): string {
  return `${ev.report.title}: ${ev.report.type}`;
}

/** A random id for `correlation_id`s: `ui-` plus 12 hex digits. */
export function correlationId(): string {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return `ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * A random RFC 4122 v4 UUID for `command_id`s. Uses `crypto.randomUUID` where the page is a
 * secure context, else builds one from `crypto.getRandomValues` (plain-HTTP deployments).
 */
export function uuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

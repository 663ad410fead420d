/**
 * Pure formatting helpers (no DOM), tested in `format.test.ts`.
 *
 * `Intl.DateTimeFormat` objects are expensive to build (tens of microseconds each), so there is
 * exactly one per locale, time zone and option set ({@link dateFormat}); rendering a row never
 * builds one.
 */

const formats = new Map<string, Intl.DateTimeFormat>();

/**
 * The shared `Intl.DateTimeFormat` for `locale`, `timeZone` and `options` (created on first use).
 * @throws RangeError when `timeZone` is not a zone this runtime knows (check with {@link isTimeZone}).
 */
export function dateFormat(
  locale: string | undefined,
  timeZone: string,
  options: Intl.DateTimeFormatOptions,
): Intl.DateTimeFormat {
  const key = `${locale ?? ""}|${timeZone}|${JSON.stringify(options)}`;
  let f = formats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(locale, { ...options, timeZone });
    formats.set(key, f);
  }
  return f;
}

/** How many formatters exist (for tests: rendering must not grow it per row). */
export function dateFormatCount(): number {
  return formats.size;
}

const zoneValid = new Map<string, boolean>();
/** True when this runtime's ICU knows the IANA zone `tz` (answers are cached). */
export function isTimeZone(tz: string | undefined | null): tz is string {
  if (!tz) return false;
  let ok = zoneValid.get(tz);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      ok = true;
    } catch {
      ok = false;
    }
    zoneValid.set(tz, ok);
  }
  return ok;
}

/** The browser's own time zone (`UTC` if it cannot tell). */
export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** The zone to show times in: the profile's when valid, else the browser's. */
export function effectiveTimeZone(profileTz?: string | null): string {
  return isTimeZone(profileTz) ? profileTz : browserTimeZone();
}

/** A locale Intl accepts: `preferred` when valid, else `undefined` (the browser's). */
export function effectiveLocale(preferred?: string | null): string | undefined {
  if (!preferred) return undefined;
  try {
    return Intl.DateTimeFormat.supportedLocalesOf([preferred]).length > 0 ? preferred : undefined;
  } catch {
    return undefined;
  }
}

const INSTANT: Intl.DateTimeFormatOptions = { dateStyle: "medium", timeStyle: "short" };
const TIME: Intl.DateTimeFormatOptions = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
const DAY_TIME: Intl.DateTimeFormatOptions = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
const SLOT: Intl.DateTimeFormatOptions = {
  weekday: "short",
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
};

/** Date and time in `tz` (`3 Feb 2026, 10:00`). Returns the input unchanged when it is not a date. */
export function formatInstant(iso: string, tz: string, locale?: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : dateFormat(locale, tz, INSTANT).format(t);
}

/**
 * A compact time for lists: the time of day when `iso` is on the same day as `now` in `tz`,
 * else day and time.
 */
export function formatTime(iso: string, tz: string, locale?: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const day = dateFormat("en-CA", tz, { year: "numeric", month: "2-digit", day: "2-digit" });
  return day.format(t) === day.format(now)
    ? dateFormat(locale, tz, TIME).format(t)
    : dateFormat(locale, tz, DAY_TIME).format(t);
}

/** `+01:00` / `-05:30` / `Z` at the end of an ISO 8601 instant, in minutes east of UTC; `null` without one. */
export function isoOffsetMinutes(iso: string): number | null {
  const m = /(?:([+-])(\d{2}):?(\d{2})|Z)$/.exec(iso);
  if (!m) return null;
  if (!m[1]) return 0;
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

function offsetLabel(minutes: number): string {
  const sign = minutes < 0 ? "-" : "+";
  const a = Math.abs(minutes);
  return `UTC${sign}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
}

/** The zone a slot list is shown in and its label. */
export interface SlotZone {
  /** An IANA zone, or `null` to show the instants at their own fixed offset. */
  zone: string | null;
  label: string;
}

/**
 * Picks the zone of a calendar command's slots: the zone the command asked for (`params.timezone`,
 * when known), else the fixed offset the slots carry (`2030-03-04T10:00:00+01:00`), else `fallback`.
 */
export function slotZone(asked: string | undefined, firstSlot: string | undefined, fallback: string): SlotZone {
  if (isTimeZone(asked)) return { zone: asked, label: asked };
  const off = firstSlot ? isoOffsetMinutes(firstSlot) : null;
  if (off !== null && off !== 0) return { zone: null, label: offsetLabel(off) };
  if (off === 0 && !isTimeZone(fallback)) return { zone: "UTC", label: "UTC" };
  return { zone: fallback, label: fallback };
}

/**
 * Formats a slot `[start, end)` in `z` (e.g. `Mon, 4 Mar 2030, 10:00 – 10:30`). With a fixed
 * offset (`z.zone === null`) the wall-clock time of the slot's own offset is shown.
 */
export function formatSlot(start: string, end: string, z: SlotZone, locale?: string): string {
  let a = Date.parse(start);
  let b = Date.parse(end);
  if (Number.isNaN(a) || Number.isNaN(b)) return `${start} – ${end}`;
  let tz = z.zone;
  if (tz === null) {
    const off = (isoOffsetMinutes(start) ?? 0) * 60_000;
    a += off;
    b += off;
    tz = "UTC";
  }
  const f = dateFormat(locale, tz, SLOT);
  return typeof f.formatRange === "function" ? f.formatRange(a, b) : `${f.format(a)} – ${f.format(b)}`;
}

/** Offset of `tz` from UTC at instant `t`, in milliseconds (positive east of Greenwich). */
export function zoneOffsetMs(t: number, tz: string): number {
  const parts = dateFormat("en-US", tz, {
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

/** A remaining duration split into units, for {@link formatCountdown} in any language. */
export function countdownParts(ms: number): { d: number; h: number; m: number; s: number } {
  const s = Math.max(0, Math.floor(ms / 1000));
  return { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600), m: Math.floor((s % 3600) / 60), s: s % 60 };
}

/** A remaining duration as `2d 3h`, `1h 02m`, `4m 05s` or `0s` (unit letters given per language). */
export function formatCountdown(
  ms: number,
  units: { d: string; h: string; m: string; s: string } = { d: "d", h: "h", m: "m", s: "s" },
): string {
  const { d, h, m, s } = countdownParts(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  if (d > 0) return `${d}${units.d} ${h}${units.h}`;
  if (h > 0) return `${h}${units.h} ${two(m)}${units.m}`;
  if (m > 0) return `${m}${units.m} ${two(s)}${units.s}`;
  return `${s}${units.s}`;
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

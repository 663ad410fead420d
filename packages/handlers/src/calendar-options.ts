import type { CalendarOptionsParams, CalendarOptionsResult, WorkingHours } from "@nexus/contracts";
import { defineHandler, HandlerError } from "./handler.ts";

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;

/** Options returned by `calendar.options.create`: always exactly this many. */
export const OPTION_COUNT = 3;
/** Slot starts lie on this grid of wall-clock minutes in the request's time zone. */
export const SLOT_GRID_MINUTES = 15;
/** ISO weekdays (1 = Monday … 7 = Sunday) used when `working_hours` gives no `days`. */
export const DEFAULT_WORKING_DAYS: readonly number[] = [1, 2, 3, 4, 5];

const GRID_MS = SLOT_GRID_MINUTES * MINUTE_MS;
const WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** A half-open interval `[start, end)` of epoch milliseconds. */
interface Span {
  start: number;
  end: number;
}

/** A possible option: a packed slot, its position in its free interval, and whether it opens a new local day. */
interface Candidate {
  slot: Span;
  index: number;
  firstOfDay: boolean;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/**
 * Wall-clock arithmetic in one IANA time zone, using only `Intl.DateTimeFormat`.
 * A "wall time" is the local date and time read as if it were UTC, in epoch milliseconds
 * (`2026-03-02 09:00` in any zone is `Date.UTC(2026, 2, 2, 9)`), so calendar steps are plain additions.
 */
class Zone {
  private readonly format: Intl.DateTimeFormat;
  readonly name: string;

  constructor(name: string) {
    this.name = name;
    let format = formatters.get(name);
    if (!format) {
      format = new Intl.DateTimeFormat("en-US", {
        timeZone: name,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      });
      formatters.set(name, format);
    }
    this.format = format;
  }

  /** The zone's UTC offset at `instant`, in milliseconds (`+01:00` → 3,600,000). */
  offset(instant: number): number {
    const part = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
    for (const { type, value } of this.format.formatToParts(instant)) {
      if (type in part) part[type as keyof typeof part] = Number(value);
    }
    const wall = Date.UTC(part.year, part.month - 1, part.day, part.hour, part.minute, part.second);
    return wall - Math.floor(instant / 1000) * 1000;
  }

  /** The wall time at `instant`. */
  wall(instant: number): number {
    return instant + this.offset(instant);
  }

  /**
   * The instant of a wall time, resolving DST like Temporal's `"compatible"` option: a time
   * repeated when clocks go back maps to the earlier instant; a time skipped when clocks go
   * forward is moved forward by the gap (02:30 on a spring-forward night → 03:30).
   * Assumes at most one offset change within a day either side, true of every IANA zone.
   */
  instant(wall: number): number {
    const before = wall - this.offset(wall - DAY_MS);
    const after = wall - this.offset(wall + DAY_MS);
    const exact = [before, after].filter((t) => this.wall(t) === wall);
    return exact.length > 0 ? Math.min(...exact) : before;
  }

  /** The first instant at or after `instant` whose wall time is on the {@link SLOT_GRID_MINUTES} grid. */
  alignUp(instant: number): number {
    let t = instant;
    // A second round only matters when an offset change lies inside the step.
    for (let round = 0; round < 2; round++) {
      const past = mod(this.wall(t), GRID_MS);
      if (past === 0) break;
      t += GRID_MS - past;
    }
    return t;
  }

  /** `instant` as ISO 8601 with this zone's offset, e.g. `2026-03-02T09:00:00+01:00`. */
  iso(instant: number): string {
    const offsetMinutes = Math.round(this.offset(instant) / MINUTE_MS);
    const local = new Date(instant + offsetMinutes * MINUTE_MS).toISOString().slice(0, 19);
    const sign = offsetMinutes < 0 ? "-" : "+";
    const abs = Math.abs(offsetMinutes);
    return `${local}${sign}${pad2(Math.floor(abs / 60))}:${pad2(abs % 60)}`;
  }
}

/**
 * Finds three meeting options for `calendar.options.create`.
 *
 * **Free time.** The window `[window.start, window.end)` minus every busy interval (busy
 * intervals may overlap each other, come in any order and reach beyond the window). With
 * `working_hours`, only `[start, end)` wall-clock time in `timezone` on the listed ISO
 * weekdays (default Monday–Friday, {@link DEFAULT_WORKING_DAYS}) counts; each day's hours
 * are converted to instants with that day's own offset, so they stay 09:00–17:00 local
 * across DST changes. Without `working_hours` any time in the window counts.
 *
 * **Grid.** A slot is `duration_minutes` of elapsed time inside one free interval and
 * starts at a wall-clock time in `timezone` whose minutes are a multiple of
 * {@link SLOT_GRID_MINUTES} (hh:00, hh:15, hh:30, hh:45; seconds 0). Within a free interval
 * the candidates are packed back to back: the earliest grid start, then the first grid start
 * at or after the previous slot's end. The options therefore never overlap one another.
 *
 * **Spreading.** Options are picked from those packed slots in this order of preference,
 * earliest first within each step, until three are chosen: (1) the earliest slot of each
 * distinct local day; (2) the first slot of every other free interval; (3) the second slot
 * of each free interval, then the third. So three different days are used when possible,
 * then different free intervals, and only then back-to-back slots. The three are returned
 * in chronological order.
 *
 * @returns exactly {@link OPTION_COUNT} options, ISO 8601 with the zone's offset
 *   (`{start: "2026-03-02T09:00:00+01:00", end: "2026-03-02T10:00:00+01:00"}`).
 * @throws {HandlerError} `INSUFFICIENT_SLOTS` (not retryable) when fewer than three
 *   non-overlapping slots exist; the message says how many and under which constraints.
 */
export function findMeetingOptions(params: CalendarOptionsParams): CalendarOptionsResult {
  const zone = new Zone(params.timezone);
  const window: Span = { start: Date.parse(params.window.start), end: Date.parse(params.window.end) };
  const busy = mergeBusy(
    params.busy.map((b) => ({ start: Date.parse(b.start), end: Date.parse(b.end) })),
    window,
  );
  const durationMs = params.duration_minutes * MINUTE_MS;

  // Candidates in chronological order: the first three slots of each free interval, and
  // every slot that is the first one seen on its local day.
  const candidates: Candidate[] = [];
  const days = new Set<number>();
  scan: for (const free of freeSpans(allowedSpans(window, zone, params.working_hours), busy)) {
    let index = 0;
    for (const slot of packSlots(free, durationMs, zone)) {
      const day = localDay(zone, slot.start);
      const firstOfDay = !days.has(day);
      days.add(day);
      if (firstOfDay || index < OPTION_COUNT) candidates.push({ slot, index, firstOfDay });
      // Three distinct days found: nothing later can be preferred, so stop scanning.
      if (days.size === OPTION_COUNT) break scan;
      index++;
    }
  }

  const preferred = [
    ...candidates.filter((c) => c.firstOfDay),
    ...candidates.filter((c) => c.index === 0),
    ...candidates.filter((c) => c.index === 1),
    ...candidates.filter((c) => c.index === 2),
  ];
  const chosen = [...new Set(preferred.map((c) => c.slot))].slice(0, OPTION_COUNT);
  if (chosen.length < OPTION_COUNT) {
    throw new HandlerError("INSUFFICIENT_SLOTS", insufficientMessage(chosen.length, params, zone), false);
  }
  return {
    options: chosen
      .sort((a, b) => a.start - b.start)
      .map((slot) => ({ start: zone.iso(slot.start), end: zone.iso(slot.end) })),
  };
}

/** Busy intervals clipped to the window, sorted, with overlapping or touching ones merged. */
function mergeBusy(busy: Span[], window: Span): Span[] {
  const clipped = busy
    .map((b) => ({ start: Math.max(b.start, window.start), end: Math.min(b.end, window.end) }))
    .filter((b) => b.end > b.start)
    .sort((a, b) => a.start - b.start);
  const merged: Span[] = [];
  for (const b of clipped) {
    const last = merged.at(-1);
    if (last && b.start <= last.end) last.end = Math.max(last.end, b.end);
    else merged.push({ ...b });
  }
  return merged;
}

/** The window, or with working hours each working day's hours clipped to the window, in order. */
function* allowedSpans(window: Span, zone: Zone, hours: WorkingHours | undefined): Generator<Span> {
  if (!hours) {
    yield window;
    return;
  }
  const weekdays = new Set(hours.days ?? DEFAULT_WORKING_DAYS);
  const open = minutesOfDay(hours.start) * MINUTE_MS;
  const close = minutesOfDay(hours.end) * MINUTE_MS;
  const lastDay = localDay(zone, window.end - 1);
  for (let day = localDay(zone, window.start); day <= lastDay; day += DAY_MS) {
    if (!weekdays.has(isoWeekday(day))) continue;
    const start = Math.max(zone.instant(day + open), window.start);
    const end = Math.min(zone.instant(day + close), window.end);
    if (end > start) yield { start, end };
  }
}

/** `allowed` (sorted, disjoint) minus `busy` (sorted, disjoint): the free intervals, in order. */
function* freeSpans(allowed: Iterable<Span>, busy: readonly Span[]): Generator<Span> {
  let first = 0;
  for (const span of allowed) {
    while (first < busy.length && (busy[first]?.end ?? 0) <= span.start) first++;
    let cursor = span.start;
    for (let i = first; i < busy.length; i++) {
      const b = busy[i];
      if (!b || b.start >= span.end) break;
      if (b.start > cursor) yield { start: cursor, end: b.start };
      cursor = Math.max(cursor, b.end);
    }
    if (cursor < span.end) yield { start: cursor, end: span.end };
  }
}

/** Grid-aligned slots packed back to back into `free`, earliest first (lazily: free intervals may be long). */
function* packSlots(free: Span, durationMs: number, zone: Zone): Generator<Span> {
  for (let start = zone.alignUp(free.start); start + durationMs <= free.end; ) {
    yield { start, end: start + durationMs };
    start = zone.alignUp(start + durationMs);
  }
}

/** The local calendar day of `instant`, as the wall time of its midnight. */
function localDay(zone: Zone, instant: number): number {
  const wall = zone.wall(instant);
  return wall - mod(wall, DAY_MS);
}

/** ISO weekday (1 = Monday … 7 = Sunday) of a local day given as the wall time of its midnight. */
function isoWeekday(day: number): number {
  return ((new Date(day).getUTCDay() + 6) % 7) + 1;
}

/** Minutes since midnight of an `HH:MM` string. */
function minutesOfDay(hhmm: string): number {
  const [h = 0, m = 0] = hhmm.split(":").map(Number);
  return h * 60 + m;
}

/** The `INSUFFICIENT_SLOTS` message: how many slots were found, where and under which constraints. */
function insufficientMessage(found: number, params: CalendarOptionsParams, zone: Zone): string {
  const what = `free ${params.duration_minutes}-minute slot${found === 1 ? "" : "s"}`;
  const count = found === 0 ? `No ${what} found` : `Only ${found} non-overlapping ${what} found`;
  const between = `between ${zone.iso(Date.parse(params.window.start))} and ${zone.iso(Date.parse(params.window.end))}`;
  const hours = params.working_hours;
  const scope = hours
    ? `within working hours ${hours.start}–${hours.end} on ${dayList(hours.days ?? DEFAULT_WORKING_DAYS)} in ${zone.name}`
    : `in ${zone.name}`;
  const busy = `${params.busy.length} busy interval${params.busy.length === 1 ? "" : "s"}`;
  return `${count} ${between} ${scope} after excluding ${busy}; ${OPTION_COUNT} options are needed.`;
}

/** ISO weekdays as text: a consecutive run as "Mon–Fri", otherwise a list ("Mon, Wed, Sat"). */
function dayList(days: readonly number[]): string {
  const sorted = [...new Set(days)].sort((a, b) => a - b);
  const name = (d: number) => WEEKDAY_NAMES[d - 1] ?? String(d);
  const first = sorted[0] ?? 1;
  const last = sorted.at(-1) ?? first;
  const consecutive = sorted.length > 2 && last - first === sorted.length - 1;
  return consecutive ? `${name(first)}–${name(last)}` : sorted.map(name).join(", ");
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/**
 * `calendar.options.create`: three conflict-free meeting slots, found by
 * {@link findMeetingOptions} (free-interval search, 15-minute local grid, spread over days).
 * @throws {HandlerError} `INSUFFICIENT_SLOTS` (not retryable) when fewer than three exist.
 */
export const calendarOptionsHandler = defineHandler("calendar.options.create", async (params) => {
  return findMeetingOptions(params);
});

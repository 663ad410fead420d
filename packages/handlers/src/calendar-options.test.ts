import { CalendarOptionsParams, COMMAND_TYPES } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { calendarOptionsHandler } from "./calendar-options.ts";
import { HandlerError } from "./handler.ts";
import { fakeContext } from "./test-context.ts";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const BERLIN = "Europe/Berlin";
const NINE_TO_FIVE = { start: "09:00", end: "17:00" };

function run(params: unknown) {
  return calendarOptionsHandler.handle(CalendarOptionsParams.parse(params), fakeContext());
}

/** The options as `[start, end]` pairs, for compact expectations. */
async function options(params: unknown): Promise<string[][]> {
  return (await run(params)).options.map((o) => [o.start, o.end]);
}

async function insufficient(params: unknown): Promise<HandlerError> {
  const error = await run(params).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HandlerError);
  expect(error).toMatchObject({ code: "INSUFFICIENT_SLOTS", retryable: false });
  return error as HandlerError;
}

describe("calendarOptionsHandler", () => {
  it("is the GREEN calendar.options.create handler", () => {
    expect(calendarOptionsHandler.type).toBe("calendar.options.create");
    expect(COMMAND_TYPES[calendarOptionsHandler.type].risk).toBe("GREEN");
  });

  it("spreads options over days, skips the weekend and follows the DST change of 2026-03-29", async () => {
    const result = await options({
      duration_minutes: 60,
      window: { start: "2026-03-27T00:00:00+01:00", end: "2026-04-01T00:00:00+02:00" },
      timezone: BERLIN,
      working_hours: NINE_TO_FIVE,
    });
    expect(result).toEqual([
      ["2026-03-27T09:00:00+01:00", "2026-03-27T10:00:00+01:00"],
      ["2026-03-30T09:00:00+02:00", "2026-03-30T10:00:00+02:00"],
      ["2026-03-31T09:00:00+02:00", "2026-03-31T10:00:00+02:00"],
    ]);
    // 09:00 local is 08:00 UTC before the change and 07:00 UTC after it.
    expect(new Date(result[0]?.[0] ?? "").toISOString()).toBe("2026-03-27T08:00:00.000Z");
    expect(new Date(result[1]?.[0] ?? "").toISOString()).toBe("2026-03-30T07:00:00.000Z");
  });

  it("measures slots in elapsed time across the skipped hour on the DST night", async () => {
    // Sunday 2026-03-29 01:00–05:00 local is only 3 hours long: 02:00–03:00 does not exist.
    const result = await options({
      duration_minutes: 60,
      window: { start: "2026-03-29T00:00:00+01:00", end: "2026-03-30T00:00:00+02:00" },
      timezone: BERLIN,
      working_hours: { start: "01:00", end: "05:00", days: [7] },
    });
    expect(result).toEqual([
      ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"],
      ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
      ["2026-03-29T04:00:00+02:00", "2026-03-29T05:00:00+02:00"],
    ]);
  });

  it("tells the repeated hour apart when clocks go back", async () => {
    const result = await options({
      duration_minutes: 60,
      window: { start: "2026-10-25T00:00:00+02:00", end: "2026-10-26T00:00:00+01:00" },
      timezone: BERLIN,
      working_hours: { start: "01:00", end: "04:00", days: [7] },
    });
    expect(result).toEqual([
      ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00"],
      ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"],
      ["2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"],
    ]);
  });

  it("handles overlapping, unsorted busy intervals reaching beyond the window", async () => {
    const result = await options({
      duration_minutes: 60,
      window: { start: "2026-03-02T08:00:00+01:00", end: "2026-03-02T18:00:00+01:00" },
      busy: [
        { start: "2026-03-02T10:30:00+01:00", end: "2026-03-02T12:00:00+01:00" },
        { start: "2026-03-01T20:00:00+01:00", end: "2026-03-02T09:30:00+01:00" },
        { start: "2026-03-02T08:15:00Z", end: "2026-03-02T10:00:00Z" },
        { start: "2026-03-02T16:00:00+01:00", end: "2026-03-03T01:00:00+01:00" },
      ],
      timezone: BERLIN,
      working_hours: NINE_TO_FIVE,
    });
    expect(result).toEqual([
      ["2026-03-02T12:00:00+01:00", "2026-03-02T13:00:00+01:00"],
      ["2026-03-02T13:00:00+01:00", "2026-03-02T14:00:00+01:00"],
      ["2026-03-02T14:00:00+01:00", "2026-03-02T15:00:00+01:00"],
    ]);
  });

  it("prefers separate free intervals over back-to-back slots", async () => {
    const result = await options({
      duration_minutes: 60,
      window: { start: "2026-03-02T09:00:00+01:00", end: "2026-03-02T17:00:00+01:00" },
      busy: [{ start: "2026-03-02T12:00:00+01:00", end: "2026-03-02T14:00:00+01:00" }],
      timezone: BERLIN,
    });
    expect(result.map(([start]) => start)).toEqual([
      "2026-03-02T09:00:00+01:00",
      "2026-03-02T10:00:00+01:00",
      "2026-03-02T14:00:00+01:00",
    ]);
  });

  it("starts slots on the local quarter hour", async () => {
    const result = await options({
      duration_minutes: 30,
      window: { start: "2026-03-02T09:07:00+01:00", end: "2026-03-02T12:00:00+01:00" },
      busy: [{ start: "2026-03-02T09:50:00+01:00", end: "2026-03-02T10:05:00+01:00" }],
      timezone: BERLIN,
    });
    expect(result.map(([start]) => start)).toEqual([
      "2026-03-02T09:15:00+01:00",
      "2026-03-02T10:15:00+01:00",
      "2026-03-02T10:45:00+01:00",
    ]);
  });

  it("aligns to the grid of a zone with a 45-minute offset", async () => {
    const result = await options({
      duration_minutes: 30,
      window: { start: "2026-03-02T00:07:00Z", end: "2026-03-02T02:00:00Z" },
      timezone: "Asia/Kathmandu",
    });
    expect(result).toEqual([
      ["2026-03-02T06:00:00+05:45", "2026-03-02T06:30:00+05:45"],
      ["2026-03-02T06:30:00+05:45", "2026-03-02T07:00:00+05:45"],
      ["2026-03-02T07:00:00+05:45", "2026-03-02T07:30:00+05:45"],
    ]);
  });

  it("allows any time of day without working hours and renders UTC as +00:00", async () => {
    const result = await options({
      duration_minutes: 45,
      window: { start: "2026-03-07T01:00:00Z", end: "2026-03-07T04:00:00Z" },
      timezone: "UTC",
    });
    expect(result.map(([start]) => start)).toEqual([
      "2026-03-07T01:00:00+00:00",
      "2026-03-07T01:45:00+00:00",
      "2026-03-07T02:30:00+00:00",
    ]);
  });

  it("excludes weekends by default and includes them when listed", async () => {
    const weekend = {
      duration_minutes: 60,
      window: { start: "2026-03-07T00:00:00+01:00", end: "2026-03-09T00:00:00+01:00" },
      timezone: BERLIN,
    };
    const error = await insufficient({ ...weekend, working_hours: NINE_TO_FIVE });
    expect(error.message).toBe(
      "No free 60-minute slots found between 2026-03-07T00:00:00+01:00 and 2026-03-09T00:00:00+01:00 " +
        "within working hours 09:00–17:00 on Mon–Fri in Europe/Berlin after excluding 0 busy intervals; " +
        "3 options are needed.",
    );
    expect((await options({ ...weekend, working_hours: { ...NINE_TO_FIVE, days: [6, 7] } })).map(([s]) => s)).toEqual([
      "2026-03-07T09:00:00+01:00",
      "2026-03-07T10:00:00+01:00",
      "2026-03-08T09:00:00+01:00",
    ]);
  });

  it("fails with INSUFFICIENT_SLOTS saying how many slots exist", async () => {
    const error = await insufficient({
      duration_minutes: 60,
      window: { start: "2026-03-02T08:00:00Z", end: "2026-03-02T10:30:00Z" },
      busy: [{ start: "2026-03-02T12:00:00Z", end: "2026-03-02T13:00:00Z" }],
      timezone: BERLIN,
      working_hours: NINE_TO_FIVE,
    });
    expect(error.message).toBe(
      "Only 2 non-overlapping free 60-minute slots found between 2026-03-02T09:00:00+01:00 and " +
        "2026-03-02T11:30:00+01:00 within working hours 09:00–17:00 on Mon–Fri in Europe/Berlin " +
        "after excluding 1 busy interval; 3 options are needed.",
    );
  });
});

/** Deterministic PRNG (mulberry32). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zones with DST, half- and quarter-hour offsets; all offsets are whole multiples of 15 minutes. */
const ZONES = [BERLIN, "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "UTC"];
/** Start dates around the 2026 DST changes (Europe, US, Lord Howe) and one ordinary week. */
const BASES = ["2026-03-26", "2026-10-22", "2026-03-06", "2026-04-03", "2026-10-02", "2026-06-10"].map(Date.parse);

interface LocalTime {
  date: string;
  time: string;
  second: number;
  weekday: number;
  offset: string;
}

const oracleFormats = new Map<string, Intl.DateTimeFormat>();
/** Wall-clock reading of `instant` in `zone`, straight from Intl (independent of the handler's code). */
function localTime(instant: number, zone: string): LocalTime {
  let format = oracleFormats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      weekday: "short",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      timeZoneName: "longOffset",
    });
    oracleFormats.set(zone, format);
  }
  const p = Object.fromEntries(format.formatToParts(instant).map((x) => [x.type, x.value]));
  const gmt = (p.timeZoneName ?? "GMT").slice(3);
  return {
    date: `${p.year}-${p.month}-${p.day}`,
    time: `${p.hour}:${p.minute}`,
    second: Number(p.second),
    weekday: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].indexOf(p.weekday ?? "") + 1,
    offset: gmt === "" ? "+00:00" : gmt,
  };
}

/** `instant` as the expected ISO 8601 string with the zone's offset, built from Intl's reading. */
function render(instant: number, zone: string): string {
  const local = localTime(instant, zone);
  return `${local.date}T${local.time}:${String(local.second).padStart(2, "0")}${local.offset}`;
}

type Params = CalendarOptionsParams;

function randomParams(random: () => number): Params {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const start = pick(BASES) + Math.floor(random() * 48 * 60) * MINUTE;
  const end = start + (4 * 60 + Math.floor(random() * 6 * 24 * 60)) * MINUTE;
  const busy = Array.from({ length: Math.floor(random() * 30) }, () => {
    const s = start - DAY + Math.floor(random() * ((end - start + 2 * DAY) / MINUTE)) * MINUTE;
    return {
      start: new Date(s).toISOString(),
      end: new Date(s + (5 + Math.floor(random() * 600)) * MINUTE).toISOString(),
    };
  });
  const days = [1, 2, 3, 4, 5, 6, 7].filter(() => random() < 0.6);
  const working_hours =
    random() < 0.3
      ? undefined
      : {
          start: pick(["07:00", "08:30", "09:00", "09:45"]),
          end: pick(["12:00", "15:15", "17:00", "18:30"]),
          days: random() < 0.5 || days.length === 0 ? undefined : days,
        };
  return CalendarOptionsParams.parse({
    duration_minutes: pick([15, 30, 45, 60, 90, 120]),
    window: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
    busy,
    timezone: pick(ZONES),
    working_hours,
  });
}

/** Whether a slot starting at `start` satisfies every constraint, checked by brute force. */
function isValidSlot(start: number, p: Params): boolean {
  const end = start + p.duration_minutes * MINUTE;
  if (start < Date.parse(p.window.start) || end > Date.parse(p.window.end)) return false;
  const s = localTime(start, p.timezone);
  if (Number(s.time.slice(3)) % 15 !== 0 || s.second !== 0) return false;
  if (p.busy.some((b) => Date.parse(b.start) < end && start < Date.parse(b.end))) return false;
  const wh = p.working_hours;
  if (!wh) return true;
  const e = localTime(end, p.timezone);
  return (
    (wh.days ?? [1, 2, 3, 4, 5]).includes(s.weekday) && s.time >= wh.start && e.date === s.date && e.time <= wh.end
  );
}

/** Brute force: the most non-overlapping valid slots (greedy by start) and the local days that have one. */
function oracle(p: Params): { count: number; days: Set<string> } {
  const duration = p.duration_minutes * MINUTE;
  let count = 0;
  let lastEnd = Number.NEGATIVE_INFINITY;
  const days = new Set<string>();
  // Every local quarter hour is a UTC quarter hour in these zones (offsets are multiples of 15 minutes).
  const first = Math.ceil(Date.parse(p.window.start) / (15 * MINUTE)) * 15 * MINUTE;
  for (let t = first; t + duration <= Date.parse(p.window.end); t += 15 * MINUTE) {
    if (!isValidSlot(t, p)) continue;
    days.add(localTime(t, p.timezone).date);
    if (t >= lastEnd) {
      count++;
      lastEnd = t + duration;
    }
  }
  return { count, days };
}

describe("calendarOptionsHandler against a brute-force oracle", () => {
  it("returns valid, spread, conflict-free options exactly when three exist", async () => {
    const outcomes = { ok: 0, insufficient: 0 };
    for (let seed = 1; seed <= 40; seed++) {
      const p = randomParams(mulberry32(seed));
      const expected = oracle(p);
      const result = await calendarOptionsHandler.handle(p, fakeContext()).catch((e: unknown) => e);
      if (result instanceof HandlerError) {
        outcomes.insufficient++;
        expect(result.code, `seed ${seed}`).toBe("INSUFFICIENT_SLOTS");
        expect(expected.count, `seed ${seed}`).toBeLessThan(3);
        expect(result.message, `seed ${seed}`).toMatch(expected.count === 0 ? /^No free/ : `Only ${expected.count} `);
        continue;
      }
      outcomes.ok++;
      expect(expected.count, `seed ${seed}`).toBeGreaterThanOrEqual(3);
      const { options } = result as { options: { start: string; end: string }[] };
      expect(options, `seed ${seed}`).toHaveLength(3);
      const starts = options.map((o) => Date.parse(o.start));
      for (const [i, o] of options.entries()) {
        const start = starts[i] ?? 0;
        expect(o.start, `seed ${seed}`).toBe(render(start, p.timezone));
        expect(o.end, `seed ${seed}`).toBe(render(Date.parse(o.end), p.timezone));
        expect(Date.parse(o.end) - start, `seed ${seed}`).toBe(p.duration_minutes * MINUTE);
        expect(isValidSlot(start, p), `seed ${seed} option ${o.start}`).toBe(true);
        if (i > 0) expect(start, `seed ${seed}`).toBeGreaterThanOrEqual(Date.parse(options[i - 1]?.end ?? ""));
      }
      if (expected.days.size >= 3) {
        expect(new Set(options.map((o) => o.start.slice(0, 10))).size, `seed ${seed}`).toBe(3);
      }
    }
    // The seeds exercise both outcomes, so neither branch above is vacuous.
    expect(outcomes.ok).toBeGreaterThan(5);
    expect(outcomes.insufficient).toBeGreaterThan(2);
  });
});

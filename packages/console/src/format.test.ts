import { describe, expect, it } from "vitest";
import { buildParams, fieldForPath } from "./commandForms.ts";
import {
  dateFormatCount,
  effectiveTimeZone,
  formatCountdown,
  formatInstant,
  formatSlot,
  formatTime,
  isoOffsetMinutes,
  parseBusy,
  slotZone,
  splitLines,
  uuid,
  zonedLocalToIso,
} from "./format.ts";
import { DEFAULT_TENANT, initialTenant, streamUrl, TENANT_STORAGE_KEY } from "./tenant.ts";

describe("format", () => {
  it("converts a wall-clock time in a zone to a UTC instant, across DST", () => {
    expect(zonedLocalToIso("2026-02-03T09:00", "Europe/Berlin")).toBe("2026-02-03T08:00:00.000Z");
    expect(zonedLocalToIso("2026-07-03T09:00", "Europe/Berlin")).toBe("2026-07-03T07:00:00.000Z");
    expect(zonedLocalToIso("2026-02-03T09:00", "America/New_York")).toBe("2026-02-03T14:00:00.000Z");
    expect(zonedLocalToIso("2026-02-03T09:00", "UTC")).toBe("2026-02-03T09:00:00.000Z");
    expect(zonedLocalToIso("", "UTC")).toBeNull();
  });

  it("formats slots in the given zone", () => {
    const s = formatSlot(
      "2026-02-03T08:00:00Z",
      "2026-02-03T08:30:00Z",
      slotZone("Europe/Berlin", undefined, "UTC"),
      "en-GB",
    );
    expect(s).toContain("09:00");
    expect(s).toContain("09:30");
  });

  it("shows slots in the zone the command asked for, else at the slots' own offset", () => {
    const start = "2030-03-04T10:00:00+05:45";
    const end = "2030-03-04T10:30:00+05:45";
    const asked = slotZone("Asia/Kathmandu", start, "Europe/Berlin");
    expect(asked).toEqual({ zone: "Asia/Kathmandu", label: "Asia/Kathmandu" });
    expect(formatSlot(start, end, asked, "en-GB")).toMatch(/10:00.*10:30/);
    const fixed = slotZone(undefined, start, "Europe/Berlin");
    expect(fixed).toEqual({ zone: null, label: "UTC+05:45" });
    expect(formatSlot(start, end, fixed, "en-GB")).toMatch(/10:00.*10:30/);
    expect(formatSlot(start, end, slotZone(undefined, undefined, "Europe/Berlin"), "en-GB")).toMatch(/05:15.*05:45/);
    expect(isoOffsetMinutes("2030-03-04T10:00:00-03:30")).toBe(-210);
    expect(isoOffsetMinutes("2030-03-04T10:00:00Z")).toBe(0);
    expect(isoOffsetMinutes("2030-03-04T10:00:00")).toBeNull();
  });

  it("builds one Intl.DateTimeFormat per locale, zone and options, however often it formats", () => {
    formatTime("2026-02-03T08:00:00Z", "Asia/Seoul", "ko-KR");
    const n = dateFormatCount();
    for (let i = 0; i < 1000; i++) {
      formatTime(new Date(Date.UTC(2026, 1, 3, 8, 0, i)).toISOString(), "Asia/Seoul", "ko-KR", Date.UTC(2026, 1, 3));
      formatInstant("2026-02-03T08:00:00Z", "Asia/Seoul", "ko-KR");
    }
    expect(dateFormatCount()).toBeLessThanOrEqual(n + 2);
  });

  it("falls back to the browser zone for an unknown profile zone", () => {
    expect(effectiveTimeZone("Europe/Berlin")).toBe("Europe/Berlin");
    expect(effectiveTimeZone("Not/AZone")).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
  });

  it("counts down, with units per language", () => {
    expect(formatCountdown(65_000)).toBe("1m 05s");
    expect(formatCountdown(3_720_000)).toBe("1h 02m");
    expect(formatCountdown(-5)).toBe("0s");
    expect(formatCountdown(65_000, { d: "일", h: "시간", m: "분", s: "초" })).toBe("1분 05초");
  });

  it("reads lines and busy intervals", () => {
    expect(splitLines(" a \n\n b\r\n")).toEqual(["a", "b"]);
    expect(parseBusy("2026-02-03T09:00:00Z/2026-02-03T10:00:00Z\nbad")).toEqual([
      { start: "2026-02-03T09:00:00Z", end: "2026-02-03T10:00:00Z" },
      { start: "bad", end: "" },
    ]);
  });

  it("makes v4 UUIDs", () => {
    expect(uuid()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("command forms", () => {
  it("builds params, leaving empty optional fields out", () => {
    expect(
      buildParams("draft_email.create", { to: " kim@example.com ", brief: "Decline", tone: "", language: "" }),
    ).toEqual({
      to: "kim@example.com",
      brief: "Decline",
    });
    expect(buildParams("prep_pack.create", { meeting_title: "Q1", attendees: "a\nb", agenda: "x", docs: "" })).toEqual({
      meeting_title: "Q1",
      attendees: ["a", "b"],
      agenda: ["x"],
    });
    expect(buildParams("doc.summary.create", { text: "Hello.", max_sentences: "3" })).toEqual({
      text: "Hello.",
      max_sentences: 3,
    });
    expect(
      buildParams("calendar.options.create", {
        duration_minutes: "30",
        window_start: "2026-02-03T09:00",
        window_end: "2026-02-06T17:00",
        busy: "",
        timezone: "Europe/Berlin",
        working_hours_start: "09:00",
        working_hours_end: "17:00",
      }),
    ).toEqual({
      duration_minutes: 30,
      window: { start: "2026-02-03T08:00:00.000Z", end: "2026-02-06T16:00:00.000Z" },
      busy: [],
      timezone: "Europe/Berlin",
      working_hours: { start: "09:00", end: "17:00" },
    });
    expect(
      buildParams("external_share.prepare", {
        recipient: "a@b.co",
        resource_ref: "r",
        resource_title: "T",
        channel: "slack",
      }),
    ).toEqual({ recipient: "a@b.co", resource: { ref: "r", title: "T" }, channel: "slack" });
  });

  it("maps validation detail paths to fields", () => {
    expect(fieldForPath("draft_email.create", "params.brief")).toBe("brief");
    expect(fieldForPath("calendar.options.create", "params.window.start")).toBe("window_start");
    expect(fieldForPath("calendar.options.create", "params.window")).toBe("window_end");
    expect(fieldForPath("calendar.options.create", "params.busy.0.end")).toBe("busy");
    expect(fieldForPath("external_share.prepare", "params.resource.title")).toBe("resource_title");
    expect(fieldForPath("external_share.prepare", "params.resource")).toBe("resource_ref");
    expect(fieldForPath("draft_email.create", "type")).toBeNull();
  });
});

describe("tenant", () => {
  const store = (v: string | null) => ({ getItem: () => v, setItem: () => {} });
  it("URL query wins over storage, storage over the default", () => {
    const saved = JSON.stringify({ org_id: "o2", project_id: "p2" });
    expect(initialTenant("?org_id=o1&project_id=p1", store(saved))).toEqual({ org_id: "o1", project_id: "p1" });
    expect(initialTenant("", store(saved))).toEqual({ org_id: "o2", project_id: "p2" });
    expect(initialTenant("?org_id=bad.id&project_id=p", store(null))).toEqual(DEFAULT_TENANT);
    expect(initialTenant("", store("{broken"))).toEqual(DEFAULT_TENANT);
    expect(TENANT_STORAGE_KEY).toBe("nexus.console.tenant");
  });
  it("builds stream URLs with an optional cursor", () => {
    expect(streamUrl({ org_id: "a", project_id: "b" }, 12)).toBe(
      "/agent/reports/stream?org_id=a&project_id=b&cursor=12",
    );
  });
});

import { COMMAND_TYPES, PrepPackParams } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { buildPrepPack, prepPackHandler } from "./prep-pack.ts";
import { fakeContext } from "./test-context.ts";

const params = PrepPackParams.parse({
  meeting_title: "Q3 planning",
  attendees: ["Kim Lee", "Alex Roe", "Sam Poe"],
  agenda: ["Budget review", "Hiring plan.", "Office move"],
  docs: ["Q3 forecast", { ref: "drive:abc123", title: "Hiring sheet" }],
});

describe("prepPackHandler", () => {
  it("is the GREEN prep_pack.create handler", () => {
    expect(prepPackHandler.type).toBe("prep_pack.create");
    expect(COMMAND_TYPES[prepPackHandler.type].risk).toBe("GREEN");
  });

  it("covers every agenda item, attendee and document in the checklist", async () => {
    const { checklist } = await prepPackHandler.handle(params, fakeContext());
    expect(checklist).toContain("Prepare talking points for agenda item 1: Budget review");
    expect(checklist).toContain("Prepare talking points for agenda item 2: Hiring plan");
    expect(checklist).toContain("Prepare talking points for agenda item 3: Office move");
    expect(checklist).toContain("Confirm attendance: Kim Lee, Alex Roe, and Sam Poe");
    expect(checklist).toContain("Share the agenda with all attendees: Kim Lee, Alex Roe, and Sam Poe");
    expect(checklist).toContain("Read: Q3 forecast");
    expect(checklist).toContain("Read: Hiring sheet (drive:abc123)");
    expect(checklist.some((c) => c.startsWith("Time-box the meeting:") && c.includes("35 minutes in total"))).toBe(
      true,
    );
    expect(checklist.at(-1)).toMatch(/^Name a follow-up owner/);
  });

  it("summarises title, attendees, agenda and documents in one paragraph", async () => {
    const { summary } = await prepPackHandler.handle(params, fakeContext());
    expect(summary).toBe(
      '"Q3 planning" brings together 3 attendees (Kim Lee, Alex Roe, and Sam Poe) to discuss 3 agenda items: ' +
        "(1) Budget review; (2) Hiring plan; (3) Office move. 2 documents are to be read beforehand. " +
        "Plan for about 35 minutes.",
    );
    for (const name of params.attendees) expect(summary).toContain(name);
    expect(summary).not.toContain("\n");
  });

  it("uses the singular and mentions missing pre-reading", () => {
    const { summary, checklist } = buildPrepPack({ meeting_title: "1:1", attendees: ["Kim"], agenda: ["Feedback"] });
    expect(summary).toContain("1 attendee (Kim) to discuss 1 agenda item: (1) Feedback.");
    expect(summary).toContain("No documents were provided as pre-reading.");
    expect(checklist.some((c) => c.startsWith("Read:"))).toBe(false);
  });

  it("drops duplicate attendees and agenda items", () => {
    const { checklist } = buildPrepPack({
      meeting_title: "Sync",
      attendees: ["Kim", " kim ", "Alex"],
      agenda: ["Status", "Status"],
    });
    expect(checklist).toContain("Confirm attendance: Kim and Alex");
    expect(checklist.filter((c) => c.startsWith("Prepare talking points"))).toEqual([
      "Prepare talking points for agenda item 1: Status",
    ]);
  });

  it("is deterministic", () => {
    expect(buildPrepPack(params)).toEqual(buildPrepPack(params));
  });

  it("refuses blank attendees", () => {
    expect(() => buildPrepPack({ meeting_title: "Sync", attendees: ["  "], agenda: ["Status"] })).toThrow(
      expect.objectContaining({ code: "VALIDATION_FAILED" }),
    );
  });
});

import { describe, expect, it } from "vitest";
import { type DraftEmailRequest, HandlerError } from "../handler.ts";
import { MAX_DERIVED_SUBJECT_LENGTH, OfflineDraftProvider, recipientName } from "./offline-provider.ts";

const TONES = ["neutral", "friendly", "formal", "firm", "apologetic"] as const;
const provider = new OfflineDraftProvider();
const signal = new AbortController().signal;

function draft(overrides: Partial<DraftEmailRequest> = {}) {
  return provider.draftEmail(
    { to: "kim@example.com", brief: "Politely decline the offer.", tone: "neutral", language: "en", ...overrides },
    signal,
  );
}

describe("OfflineDraftProvider", () => {
  it("is named offline", () => {
    expect(provider.name).toBe("offline");
  });

  it("writes a different email for every tone, each restating the brief", async () => {
    const bodies = await Promise.all(TONES.map((tone) => draft({ tone }).then((d) => d.body)));
    expect(new Set(bodies).size).toBe(TONES.length);
    for (const body of bodies) {
      expect(body).toContain("decline the offer");
      expect(body).not.toMatch(/politely/i);
    }
  });

  it("greets the recipient by the name in the address and ends with a sign-off", async () => {
    const expected = {
      neutral: "Hello Kim,",
      friendly: "Hi Kim,",
      formal: "Dear Kim,",
      firm: "Dear Kim,",
      apologetic: "Dear Kim,",
    };
    for (const tone of TONES) {
      const { body } = await draft({ tone, senderName: "Alex Example" });
      const paragraphs = body.split("\n\n");
      expect(paragraphs[0]).toBe(expected[tone]);
      expect(paragraphs.at(-1)).toMatch(/^[A-Z][a-z ]+,\nAlex Example$/);
    }
  });

  it("uses per-tone phrasing that fits the tone", async () => {
    expect((await draft({ tone: "formal" })).body).toContain("I would like to decline the offer.");
    expect((await draft({ tone: "firm" })).body).toContain("I need to decline the offer.");
    expect((await draft({ tone: "apologetic" })).body).toMatch(/apologies/);
    expect((await draft({ tone: "friendly" })).body).toContain("I hope you are doing well!");
  });

  it("turns instructions about the recipient into direct address", async () => {
    const { body } = await draft({ brief: "Ask Kim for the Q3 numbers. Thank Kim for Kim's help last week." });
    expect(body).toContain("I am writing to ask you for the Q3 numbers.");
    expect(body).toContain("I would also like to thank you for your help last week.");
  });

  it("introduces a statement and keeps every paragraph of the brief", async () => {
    const { body } = await draft({
      tone: "apologetic",
      brief: "the shipment will arrive two days late\n\nA replacement part is already on its way.",
    });
    expect(body).toContain("I am sorry to let you know that the shipment will arrive two days late.");
    expect(body).toContain("\n\nA replacement part is already on its way.\n\n");
  });

  it("derives a title-cased subject from the brief when none is given", async () => {
    expect((await draft()).subject).toBe("Decline the Offer");
    expect((await draft({ brief: "share the Q3 report with the board" })).subject).toBe(
      "Share the Q3 Report with the Board",
    );
  });

  it("keeps an explicit subject", async () => {
    expect((await draft({ subject: "  Your offer  " })).subject).toBe("Your offer");
  });

  it("cuts a long derived subject at a word boundary", async () => {
    const brief = `Confirm ${"the quarterly planning workshop agenda and ".repeat(5)}logistics.`;
    const { subject } = await draft({ brief });
    expect(subject.length).toBeLessThanOrEqual(MAX_DERIVED_SUBJECT_LENGTH);
    expect(subject).toMatch(/^Confirm the Quarterly .*[a-z]…$/);
  });

  it("writes German greetings and closings for de and de-DE", async () => {
    const formal = await draft({ to: "anna.schmidt@example.de", tone: "formal", language: "de-DE", senderName: "Jan" });
    expect(formal.body.startsWith("Guten Tag Anna Schmidt,\n\nich wende mich")).toBe(true);
    expect(formal.body.endsWith("Mit freundlichen Grüßen\nJan")).toBe(true);
    const friendly = await draft({ to: "anna.schmidt@example.de", tone: "friendly", language: "de" });
    expect(friendly.body.startsWith("Hallo Anna,")).toBe(true);
    expect(friendly.body.endsWith("Herzliche Grüße")).toBe(true);
  });

  it("falls back to English phrases for other languages", async () => {
    const fr = await draft({ language: "fr" });
    const en = await draft({ language: "en" });
    expect(fr).toEqual(en);
  });

  it("greets without a name when the address is a role mailbox or there is none", async () => {
    expect((await draft({ to: "info@example.com", tone: "formal" })).body.startsWith("Dear Sir or Madam,")).toBe(true);
    expect((await draft({ to: undefined, tone: "friendly" })).body.startsWith("Hi there,")).toBe(true);
  });

  it("is deterministic", async () => {
    expect(await draft({ tone: "firm" })).toEqual(await draft({ tone: "firm" }));
  });

  it("rejects a brief without words and an aborted signal", async () => {
    await expect(draft({ brief: " \n\n ... " })).rejects.toMatchObject({ code: "VALIDATION_FAILED", retryable: false });
    await expect(draft({ brief: " \n\n ... " })).rejects.toBeInstanceOf(HandlerError);
    const aborted = new AbortController();
    aborted.abort(new Error("shutting down"));
    await expect(
      provider.draftEmail({ brief: "Hello", tone: "neutral", language: "en" }, aborted.signal),
    ).rejects.toThrow("shutting down");
  });
});

describe("OfflineDraftProvider in Korean", () => {
  const brief = "공급업체의 제안을 정중히 거절해 주세요";
  const ko = (overrides: Partial<DraftEmailRequest> = {}) => draft({ brief, language: "ko", ...overrides });

  it("greets with 님, restates the request in the first person, closes with 감사합니다 and the sender's name", async () => {
    const { subject, body } = await ko({ senderName: "이민준" });
    expect(subject).toBe("공급업체의 제안 거절 건");
    const paragraphs = body.split("\n\n");
    expect(paragraphs[0]).toBe("안녕하세요, Kim님.");
    expect(paragraphs).toContain("공급업체의 제안을 거절하고자 합니다.");
    expect(paragraphs.at(-1)).toBe("감사합니다.\n이민준 드림");
    expect(body.replaceAll("Kim", "")).not.toMatch(/[A-Za-z]/); // no English phrases (the recipient's name aside)
  });

  it("writes a different Korean email for every tone", async () => {
    const bodies = await Promise.all(TONES.map((tone) => ko({ tone }).then((d) => d.body)));
    expect(new Set(bodies).size).toBe(TONES.length);
    expect(bodies[TONES.indexOf("formal")]?.startsWith("안녕하십니까, Kim님.")).toBe(true);
    expect(bodies[TONES.indexOf("apologetic")]).toContain("죄송합니다");
    for (const b of bodies) expect(b).toContain("감사합니다.");
  });

  it("never uses the brief as subject or body, also for statements and without a recipient", async () => {
    for (const b of [brief, "회의 일정이 다음 주로 변경되었습니다.", "견적서를 보내 주세요"]) {
      const d = await draft({ brief: b, language: "ko", to: undefined });
      expect(d.subject).not.toBe(b);
      expect(d.body).not.toBe(b);
      expect(d.body.startsWith("안녕하세요.")).toBe(true);
    }
    expect((await draft({ brief: "견적서를 보내 주세요", language: "ko" })).body).toContain(
      "견적서를 보내 드리고자 합니다.",
    );
  });

  it("uses ko phrases for ko-KR and keeps an explicit subject", async () => {
    const d = await ko({ language: "ko-KR", subject: "제안 회신" });
    expect(d.subject).toBe("제안 회신");
    expect(d.body.startsWith("안녕하세요, Kim님.")).toBe(true);
  });
});

describe("recipientName", () => {
  it("derives first and full names from the local part", () => {
    expect(recipientName("kim@example.com")).toEqual({ first: "Kim", full: "Kim" });
    expect(recipientName("anna.schmidt+news@example.de")).toEqual({ first: "Anna", full: "Anna Schmidt" });
    expect(recipientName("ZOË_van-dyke2@example.org")).toEqual({ first: "Zoë", full: "Zoë Van Dyke" });
    expect(recipientName("j.smith@example.com")).toEqual({ first: "J. Smith", full: "J. Smith" });
  });

  it("finds no name in role mailboxes or digits", () => {
    expect(recipientName("support@example.com")).toBeUndefined();
    expect(recipientName("no-reply@example.com")).toBeUndefined();
    expect(recipientName("12345@example.com")).toBeUndefined();
  });
});

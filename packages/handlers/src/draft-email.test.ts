import { COMMAND_TYPES, DraftEmailParams } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { draftEmailHandler } from "./draft-email.ts";
import type { DraftEmailRequest, LlmProvider } from "./handler.ts";
import { OfflineDraftProvider } from "./llm/offline-provider.ts";
import { fakeContext } from "./test-context.ts";

/** The offline provider, remembering the requests it was given. */
class RecordingProvider extends OfflineDraftProvider {
  readonly requests: DraftEmailRequest[] = [];
  override draftEmail(req: DraftEmailRequest, signal: AbortSignal) {
    this.requests.push(req);
    return super.draftEmail(req, signal);
  }
}

function run(params: unknown, ctx = fakeContext()) {
  return draftEmailHandler.handle(DraftEmailParams.parse(params), ctx);
}

describe("draftEmailHandler", () => {
  it("is the GREEN draft_email.create handler", () => {
    expect(draftEmailHandler.type).toBe("draft_email.create");
    expect(COMMAND_TYPES[draftEmailHandler.type].risk).toBe("GREEN");
  });

  it("drafts with the defaults tone neutral and language en", async () => {
    const llm = new RecordingProvider();
    const result = await run({ to: "kim@example.com", brief: "Politely decline the offer" }, fakeContext(llm));
    expect(llm.requests).toEqual([
      {
        to: "kim@example.com",
        subject: undefined,
        brief: "Politely decline the offer",
        tone: "neutral",
        language: "en",
      },
    ]);
    expect(result.subject).toBe("Decline the Offer");
    expect(result.body.startsWith("Hello Kim,\n\n")).toBe(true);
    expect(result.body).toContain("I am writing to decline the offer.");
  });

  it("passes tone, language and subject through", async () => {
    const result = await run({
      to: "anna.schmidt@example.de",
      subject: "Ihr Angebot",
      brief: "Wir nehmen das Angebot leider nicht an.",
      tone: "formal",
      language: "de",
    });
    expect(result.subject).toBe("Ihr Angebot");
    expect(result.body).toContain("Guten Tag Anna Schmidt,");
    expect(result.body).toContain("Wir nehmen das Angebot leider nicht an.");
    expect(result.body).toContain("Mit freundlichen Grüßen");
  });

  it("fails retryably when the provider returns no usable draft", async () => {
    const broken: LlmProvider = { name: "broken", draftEmail: async () => ({ subject: " ", body: "text" }) };
    await expect(run({ brief: "Say hi" }, fakeContext(broken))).rejects.toMatchObject({
      code: "HANDLER_FAILED",
      retryable: true,
      message: expect.stringContaining('"broken"'),
    });
  });

  it("propagates a provider's own error", async () => {
    const failing: LlmProvider = {
      name: "failing",
      draftEmail: async () => {
        throw new Error("upstream timeout");
      },
    };
    await expect(run({ brief: "Say hi" }, fakeContext(failing))).rejects.toThrow("upstream timeout");
  });
});

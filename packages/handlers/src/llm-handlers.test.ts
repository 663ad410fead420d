/**
 * The model paths of doc.summary.create and prep_pack.create with a scripted client: map-reduce
 * (stored progress only at stage changes, live progress per step), the text's language, and
 * validated structured answers.
 */
import { DocSummaryParams, PrepPackParams } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { chunkText, docSummaryHandler, MAP_CHUNK_CHARS } from "./doc-summary.ts";
import { HandlerError } from "./handler.ts";
import type { LlmClient, LlmRequest } from "./llm/client.ts";
import { prepPackHandler } from "./prep-pack.ts";
import { fakeContext } from "./test-context.ts";

/** A client answering by task; records the requests. */
function client(answers: Record<string, (req: LlmRequest<unknown>) => unknown>): LlmClient & {
  requests: LlmRequest<unknown>[];
} {
  const requests: LlmRequest<unknown>[] = [];
  return {
    providers: ["anthropic"],
    offlineFallback: false,
    requests,
    async generate(req, call) {
      requests.push(req as LlmRequest<unknown>);
      const answer = answers[req.task]?.(req as LlmRequest<unknown>);
      if (answer === undefined) throw new HandlerError("LLM_UNAVAILABLE", "no answer", true);
      if (req.streamField) call.onDelta?.(String((answer as Record<string, unknown>)[req.streamField]), 1);
      return {
        value: req.schema.parse(answer),
        provider: "anthropic",
        model: "claude-test",
        tokensIn: 1,
        tokensOut: 1,
        costUsd: 0,
      };
    },
  };
}

describe("chunkText", () => {
  it("cuts at paragraph, sentence and word boundaries, keeps everything in order", () => {
    const text = ["Alpha beta gamma.", "Delta epsilon. Zeta eta theta iota.", "x".repeat(25)].join("\n\n");
    const chunks = chunkText(text, 20);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(20);
    expect(chunks.join(" ").replace(/\s+/g, "")).toBe(text.replace(/\s+/g, ""));
    expect(chunks[0]).toBe("Alpha beta gamma.");
  });
});

describe("doc.summary.create with a model", () => {
  it("summarises a short text in one reduce call, in the text's language, streaming the summary", async () => {
    const llm = client({ "summary.reduce": () => ({ summary: "첫 문장입니다. 두 번째 문장입니다." }) });
    const live: unknown[] = [];
    const stored: string[] = [];
    const text = "회의는 다음 주 화요일로 연기되었습니다. 예산 검토가 주요 안건입니다. 모든 팀장은 참석해야 합니다.";
    const result = await docSummaryHandler.handle(
      DocSummaryParams.parse({ text, max_sentences: 2 }),
      fakeContext(llm, { live: (p) => live.push(p), progress: async (s) => void stored.push(s) }),
    );
    expect(result).toEqual({
      summary: "첫 문장입니다. 두 번째 문장입니다.",
      sentences: ["첫 문장입니다.", "두 번째 문장입니다."],
      language: "ko",
      provider: "anthropic",
      model: "claude-test",
    });
    expect(llm.requests.map((r) => r.task)).toEqual(["summary.reduce"]);
    expect(llm.requests[0]?.system).toContain("Korean (ko)");
    expect(llm.requests[0]?.system).not.toContain("회의");
    expect(llm.requests[0]?.user).toContain("회의는 다음 주");
    expect(stored).toEqual([]); // one call: no stored progress
    expect(live).toContainEqual({ stage: "reduce", text_delta: "첫 문장입니다. 두 번째 문장입니다." });
  });

  it("map-reduces a long text: one map call per piece, then a reduce over the points; stored progress only for map and reduce", async () => {
    const sentence = "The quarterly budget review covers hiring, travel and infrastructure costs in detail. ";
    const text = sentence.repeat(Math.ceil((MAP_CHUNK_CHARS * 3.5) / sentence.length));
    let maps = 0;
    const llm = client({
      "summary.map": () => ({ points: [`point ${++maps}`] }),
      "summary.reduce": (req) => {
        expect(req.user).toContain("point 1");
        return { summary: "The review covers costs. Hiring dominates. Travel is flat." };
      },
    });
    const stored: string[] = [];
    const live: { stage: string; percent?: number }[] = [];
    const result = await docSummaryHandler.handle(
      DocSummaryParams.parse({ text, max_sentences: 2 }),
      fakeContext(llm, { live: (p) => live.push(p), progress: async (s) => void stored.push(s) }),
    );
    const pieces = chunkText(text, MAP_CHUNK_CHARS).length;
    expect(pieces).toBe(4);
    expect(llm.requests.map((r) => r.task)).toEqual([...Array(pieces).fill("summary.map"), "summary.reduce"]);
    expect(stored).toEqual(["map", "reduce"]);
    expect(live.filter((p) => p.stage === "map").map((p) => p.percent)).toEqual([0, 25, 50, 75, 100]);
    expect(result.sentences).toEqual(["The review covers costs.", "Hiring dominates."]);
    expect(result.language).toBe("en");
  });
});

describe("prep_pack.create with a model", () => {
  const params = PrepPackParams.parse({
    meeting_title: "Q3 planning",
    attendees: ["Kim"],
    agenda: ["Budget", "Hiring"],
  });

  it("returns the model's checklist, talking points and summary in the profile's language", async () => {
    const answer = {
      summary: "Q3 계획 회의입니다.",
      checklist: ["안건 공유"],
      talking_points: ["Budget: 예산 초과 여부", "Hiring: 채용 일정"],
    };
    const llm = client({ prep_pack: () => answer });
    const result = await prepPackHandler.handle(params, fakeContext(llm, { profile: { locale: "ko-KR" } }));
    expect(result).toEqual({ ...answer, language: "ko", provider: "anthropic", model: "claude-test" });
    expect(llm.requests[0]?.user).toContain("Q3 planning");
    expect(llm.requests[0]?.system).not.toContain("Q3 planning");
  });

  it("offline: checklist, summary and one talking point per agenda item", async () => {
    const result = await prepPackHandler.handle(params, fakeContext());
    expect(result.provider).toBe("offline");
    expect(result.talking_points).toHaveLength(2);
    expect(result.talking_points?.[0]).toMatch(/^1\. Budget: /);
  });
});

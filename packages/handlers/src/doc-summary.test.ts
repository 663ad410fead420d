import { COMMAND_TYPES, DocSummaryParams, MAX_SUMMARY_TEXT_BYTES } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import {
  contentTokens,
  docSummaryHandler,
  MAX_RANKED_SENTENCES,
  preselect,
  splitSentences,
  summarise,
  TEXTRANK_DAMPING,
  textRankScores,
} from "./doc-summary.ts";
import { fakeContext } from "./test-context.ts";

function run(params: unknown) {
  return docSummaryHandler.handle(DocSummaryParams.parse(params), fakeContext());
}

/** Deterministic PRNG (mulberry32) so generated documents are the same on every run. */
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

/** Four sentences about solar power amid four unrelated ones. */
const SOLAR = [
  "The weather was pleasant on Monday morning.",
  "Solar panels convert sunlight into electricity for homes.",
  "My cat enjoys sleeping on the sofa.",
  "Homes with solar panels pay less for electricity.",
  "Solar electricity reduces energy costs for homes and businesses.",
  "The bakery sells fresh bread every day.",
  "Energy costs fall when homes produce solar electricity.",
  "Football fans gathered in the stadium.",
];
const CENTRAL = new Set([1, 3, 4, 6]);

describe("splitSentences", () => {
  it("does not split at abbreviations, initials or decimals", () => {
    expect(
      splitSentences(
        "Dr. Smith met J. R. Jones in the U.S. capital, e.g. at the Mall. It cost 3.5 million! Why? No. 5 won.",
      ),
    ).toEqual([
      "Dr. Smith met J. R. Jones in the U.S. capital, e.g. at the Mall.",
      "It cost 3.5 million!",
      "Why?",
      "No. 5 won.",
    ]);
  });

  it("splits where the next word starts upper-case and keeps closing quotes", () => {
    expect(splitSentences('He said "stop." Then he left. It was approx. five.')).toEqual([
      'He said "stop."',
      "Then he left.",
      "It was approx. five.",
    ]);
  });

  it("treats blank lines as paragraph ends, list items as sentences and single newlines as wraps", () => {
    const text =
      "# Status\nThe build is\ngreen again\n\nNext steps:\n- fix the flaky test\n* ship 2.1\n1. celebrate\r\n\r\nDone.";
    expect(splitSentences(text)).toEqual([
      "Status",
      "The build is green again",
      "Next steps:",
      "fix the flaky test",
      "ship 2.1",
      "celebrate",
      "Done.",
    ]);
  });
});

describe("contentTokens", () => {
  it("lower-cases, drops stop words, possessives and one-letter tokens", () => {
    expect(contentTokens("The company's CEO doesn't like a 2% rise in Q3 costs.")).toEqual([
      "company",
      "ceo",
      "like",
      "rise",
      "q3",
      "costs",
    ]);
  });
});

describe("textRankScores", () => {
  it("gives an isolated sentence exactly 1 - d and a hub the highest score", () => {
    const scores = textRankScores([
      ["solar", "energy", "cost", "homes"],
      ["solar", "panels"],
      ["energy", "prices"],
      ["homes", "cost", "rent"],
      ["football", "stadium"],
    ]);
    expect(scores[4]).toBeCloseTo(1 - TEXTRANK_DAMPING, 12);
    const hub = scores[0] ?? 0;
    for (const i of [1, 2, 3]) expect(hub).toBeGreaterThan(scores[i] ?? Number.POSITIVE_INFINITY);
  });

  it("converges to scores averaging 1 when every sentence has an edge", () => {
    const tokens = SOLAR.slice(1)
      .map(contentTokens)
      .concat([["bread", "sofa", "stadium", "weather"]]);
    const scores = textRankScores([...tokens, ["bread", "cat"], ["sofa", "cat"], ["stadium", "weather"]]);
    const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
    expect(mean).toBeCloseTo(1, 5);
  });

  it("scores identical sentences equally", () => {
    const scores = textRankScores([
      ["alpha", "beta", "gamma"],
      ["alpha", "beta", "gamma"],
      ["alpha", "delta"],
    ]);
    expect(scores[0]).toBeCloseTo(scores[1] ?? 0, 9);
  });
});

describe("summarise", () => {
  it("picks the central sentences and keeps document order", () => {
    const picked = summarise(SOLAR.join(" "), 3);
    expect(picked).toHaveLength(3);
    const indices = picked.map((s) => SOLAR.indexOf(s));
    expect(indices.every((i) => CENTRAL.has(i))).toBe(true);
    expect([...indices].sort((a, b) => a - b)).toEqual(indices);
  });

  it("returns every sentence when there are no more than requested", () => {
    expect(summarise("One thing. Another thing.", 3)).toEqual(["One thing.", "Another thing."]);
  });
});

describe("preselect", () => {
  it("keeps all sentences up to the cap", () => {
    const tokens = Array.from({ length: MAX_RANKED_SENTENCES }, (_, i) => [`w${i}`]);
    expect(preselect(tokens)).toEqual(tokens.map((_, i) => i));
  });

  it("keeps the sentences made of frequent words when over the cap", () => {
    const topical = new Set<number>();
    const tokens: string[][] = [];
    for (let i = 0; i < 500; i++) {
      if (i % 10 === 0) {
        topical.add(i);
        tokens.push(["budget", "forecast", "revenue"]);
      } else {
        tokens.push([`unique${i}a`, `unique${i}b`]);
      }
    }
    const kept = preselect(tokens);
    expect(kept).toHaveLength(MAX_RANKED_SENTENCES);
    expect([...kept].sort((a, b) => a - b)).toEqual(kept);
    for (const i of topical) expect(kept).toContain(i);
  });
});

describe("docSummaryHandler", () => {
  it("is the GREEN doc.summary.create handler", () => {
    expect(docSummaryHandler.type).toBe("doc.summary.create");
    expect(COMMAND_TYPES[docSummaryHandler.type].risk).toBe("GREEN");
  });

  it("returns max_sentences sentences and their join", async () => {
    const result = await run({ text: SOLAR.join("\n\n"), max_sentences: 2 });
    expect(result.sentences).toHaveLength(2);
    expect(result.summary).toBe(result.sentences.join(" "));
    expect(result.sentences.every((s) => CENTRAL.has(SOLAR.indexOf(s)))).toBe(true);
  });

  it("defaults to three sentences", async () => {
    expect((await run({ text: SOLAR.join(" ") })).sentences).toHaveLength(3);
  });

  it("summarises a 1 MiB document", async () => {
    const random = mulberry32(42);
    const vocabulary = Array.from({ length: 3000 }, (_, i) => `term${i.toString(36)}`);
    const pick = () => vocabulary[Math.floor(random() ** 2 * vocabulary.length)] ?? "term";
    const sentences: string[] = [];
    let bytes = 0;
    while (true) {
      const words = Array.from({ length: 8 + Math.floor(random() * 20) }, pick);
      const sentence = `${words.join(" ").replace(/^./, (c) => c.toUpperCase())}.`;
      if (bytes + sentence.length + 1 > MAX_SUMMARY_TEXT_BYTES) break;
      sentences.push(sentence);
      bytes += sentence.length + 1;
    }
    const result = await run({ text: sentences.join(" "), max_sentences: 5 });
    expect(result.sentences).toHaveLength(5);
    const indices = result.sentences.map((s) => sentences.indexOf(s));
    expect(indices.every((i) => i >= 0)).toBe(true);
    expect([...indices].sort((a, b) => a - b)).toEqual(indices);
  });

  it("refuses text without sentences", async () => {
    await expect(run({ text: " \n\n \t" })).rejects.toMatchObject({ code: "VALIDATION_FAILED", retryable: false });
  });
});

import type { DocSummaryResult } from "@nexus/contracts";
import {
  answerOffline,
  defineHandler,
  type HandlerContext,
  HandlerError,
  llmCallOf,
  type ParamsOf,
} from "./handler.ts";
import { detectLanguage } from "./llm/language.ts";
import {
  dataMessage,
  SummaryMapAnswer,
  SummaryReduceAnswer,
  summaryMapSystemPrompt,
  summaryReduceSystemPrompt,
} from "./llm/prompts.ts";

/** Sentences returned when the command does not set `max_sentences`. */
export const DEFAULT_MAX_SENTENCES = 3;
/** PageRank damping factor `d` (the value used by Mihalcea & Tarau, 2004). */
export const TEXTRANK_DAMPING = 0.85;
/** Power iteration stops once no score moves by more than this between two iterations. */
export const TEXTRANK_TOLERANCE = 1e-6;
/** Power iteration stops after this many iterations even if not converged. */
export const TEXTRANK_MAX_ITERATIONS = 100;
/**
 * Cap on the sentences that enter the TextRank graph. The graph has one edge weight per
 * sentence pair (O(n²) time and memory), so a long document is first reduced to the
 * {@link MAX_RANKED_SENTENCES} sentences with the highest term-frequency score (see
 * {@link preselect}); the others cannot be chosen. 400 sentences are 79,800 pairs.
 */
export const MAX_RANKED_SENTENCES = 400;

/** A small English stop-word list (function words that carry no topic). */
const STOP_WORDS = new Set(
  (
    "a about above after again against all also am an and any are as at be because been before being below " +
    "between both but by can cannot could did didnt do does doesnt doing dont down during each few for from " +
    "further had has have having he her here hers herself him himself his how i if in into is isnt it its itself " +
    "just me more most my myself no nor not now of off on once only or other our ours ourselves out over own same " +
    "she should so some such than that the their theirs them themselves then there these they this those through " +
    "to too under until up very was wasnt we were werent what when where which while who whom why will with " +
    "wont would you your yours yourself yourselves"
  ).split(" "),
);

/** Abbreviations whose final "." never ends a sentence ("Dr. Smith", "e.g. Paris"). Lower-case, with the dot. */
const ABBREVIATIONS = new Set(
  (
    "mr. mrs. ms. dr. prof. sr. jr. st. mt. rev. gen. col. lt. sgt. capt. hon. messrs. " +
    "e.g. i.e. cf. viz. vs. al. approx. ca. resp. incl. esp. dept. est."
  ).split(" "),
);
/** Abbreviations that only skip a sentence end when a number follows ("No. 5", "Fig. 2", "Jan. 12"). */
const NUMBER_ABBREVIATIONS = new Set(
  (
    "no. nos. fig. figs. p. pp. vol. art. sec. ch. eq. " +
    "jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec."
  ).split(" "),
);

/** A list item marker at the start of a line: the item starts a new sentence. */
const LIST_MARKER = /^\s*(?:[-*•·]|\d{1,3}[.)])\s+/;
/** A Markdown heading marker at the start of a line: the heading line is a sentence of its own. */
const HEADING_MARKER = /^\s*#{1,6}\s+/;
/** Sentence-final punctuation, optionally followed by closing quotes or brackets, then whitespace or the end. */
const SENTENCE_END = /[.!?…]+["'”’)\]]*(?=\s|$)/g;

/**
 * Splits text into sentences, in document order, with whitespace collapsed to single spaces.
 *
 * Rules: blank lines end a paragraph (and a sentence); a line starting with a list marker
 * (`-`, `*`, `•`, `1.`, `2)`) starts a new sentence, a Markdown heading line (`# …`) is a
 * sentence of its own, both without the marker; other line breaks are soft wraps. Inside a paragraph a sentence ends at `.`,
 * `!`, `?` or `…` (plus closing quotes/brackets) that is followed by whitespace, except when
 * the next word starts lower-case, when the dot ends an abbreviation ("Dr.", "e.g.",
 * "U.S.", an initial "J."; "No.", "Fig." and month names only before a number). Decimals
 * such as "3.14" never split because no whitespace follows the dot.
 */
export function splitSentences(text: string): string[] {
  const sentences: string[] = [];
  for (const paragraph of text.replace(/\r\n?/g, "\n").split(/\n[ \t]*\n/)) {
    for (const segment of paragraphSegments(paragraph)) {
      sentences.push(...splitSegment(segment));
    }
  }
  return sentences;
}

/** The paragraph's lines joined into segments; list items and headings start segments of their own. */
function paragraphSegments(paragraph: string): string[] {
  const segments: string[] = [];
  let current = "";
  for (const line of paragraph.split("\n")) {
    if (HEADING_MARKER.test(line)) {
      segments.push(current, line.replace(HEADING_MARKER, ""));
      current = "";
    } else if (LIST_MARKER.test(line)) {
      segments.push(current);
      current = line.replace(LIST_MARKER, "");
    } else {
      current += ` ${line}`;
    }
  }
  segments.push(current);
  return segments.map((s) => s.replace(/\s+/g, " ").trim()).filter((s) => s.length > 0);
}

/** Splits one whitespace-normalised segment at its sentence ends (rules in {@link splitSentences}). */
function splitSegment(segment: string): string[] {
  const sentences: string[] = [];
  let start = 0;
  for (const match of segment.matchAll(SENTENCE_END)) {
    const end = match.index + match[0].length;
    const next = segment.slice(end + 1);
    if (next === "" || !isSentenceEnd(segment, match.index, match[0], next)) continue;
    sentences.push(segment.slice(start, end).trim());
    start = end + 1;
  }
  const rest = segment.slice(start).trim();
  if (rest !== "") sentences.push(rest);
  return sentences;
}

/** Whether the punctuation `mark` at `index` ends a sentence, given the text `next` after the following space. */
function isSentenceEnd(segment: string, index: number, mark: string, next: string): boolean {
  if (/^\p{Ll}/u.test(next)) return false;
  if (mark !== ".") return true;
  const word = segment
    .slice(segment.lastIndexOf(" ", index - 1) + 1, index + 1)
    .replace(/^["'“‘([]+/, "")
    .toLowerCase();
  if (ABBREVIATIONS.has(word) || /^(?:\p{L}\.)+$/u.test(word)) return false;
  return !(NUMBER_ABBREVIATIONS.has(word) && /^\p{N}/u.test(next));
}

/**
 * Content words of a sentence: lower-cased runs of letters and digits, with a possessive
 * "'s" dropped and other apostrophes removed ("don't" → "dont"), minus stop words and
 * one-character tokens. No stemming.
 */
export function contentTokens(sentence: string): string[] {
  const words =
    sentence
      .toLowerCase()
      .replace(/['’]s(?![\p{L}\p{N}])/gu, "")
      .replace(/['’]/g, "")
      .match(/[\p{L}\p{N}]+/gu) ?? [];
  return words.filter((w) => w.length > 1 && !STOP_WORDS.has(w));
}

/**
 * TextRank sentence scores (Mihalcea & Tarau, 2004, "TextRank: Bringing Order into Texts",
 * EMNLP, section 4.1). `tokens[i]` are the content words of sentence `i`.
 *
 * Edge weight (the paper's sentence similarity):
 * `sim(Si, Sj) = |{w : w ∈ Si and w ∈ Sj}| / (log |Si| + log |Sj|)`, with `|S|` the number of
 * content words of `S` and natural logarithms; it is 0 when the denominator is not positive
 * (two one-word sentences), where the formula is undefined.
 *
 * Scores: weighted PageRank on the undirected graph,
 * `WS(Vi) = (1 − d) + d · Σj [w_ji / Σk w_jk] · WS(Vj)`, starting from 1, iterated
 * synchronously until no score changes by more than {@link TEXTRANK_TOLERANCE} or
 * {@link TEXTRANK_MAX_ITERATIONS} iterations, with `d` = {@link TEXTRANK_DAMPING}.
 * A sentence without edges keeps `1 − d`. Time and memory O(n²) in sentences.
 */
export function textRankScores(tokens: readonly string[][]): Float64Array {
  const n = tokens.length;
  const ids = new Map<string, number>();
  const idOf = (token: string): number => {
    let id = ids.get(token);
    if (id === undefined) {
      id = ids.size;
      ids.set(token, id);
    }
    return id;
  };
  // Each sentence's distinct words as ascending ids, so overlaps are a linear merge.
  const sets = tokens.map((ts) => Uint32Array.from(new Set(ts.map(idOf))).sort());
  const logLength = tokens.map((ts) => (ts.length > 0 ? Math.log(ts.length) : 0));

  const weights = new Float64Array(n * n);
  const outWeight = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const denominator = (logLength[i] ?? 0) + (logLength[j] ?? 0);
      if (denominator <= 0) continue;
      const w = sortedOverlap(sets[i] ?? new Uint32Array(), sets[j] ?? new Uint32Array()) / denominator;
      if (w === 0) continue;
      weights[i * n + j] = w;
      weights[j * n + i] = w;
      outWeight[i] = (outWeight[i] ?? 0) + w;
      outWeight[j] = (outWeight[j] ?? 0) + w;
    }
  }

  let scores = new Float64Array(n).fill(1);
  for (let iteration = 0; iteration < TEXTRANK_MAX_ITERATIONS; iteration++) {
    const next = new Float64Array(n);
    let delta = 0;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const w = weights[j * n + i] ?? 0;
        if (w !== 0) sum += (w / (outWeight[j] ?? 1)) * (scores[j] ?? 0);
      }
      const score = 1 - TEXTRANK_DAMPING + TEXTRANK_DAMPING * sum;
      next[i] = score;
      delta = Math.max(delta, Math.abs(score - (scores[i] ?? 0)));
    }
    scores = next;
    if (delta < TEXTRANK_TOLERANCE) break;
  }
  return scores;
}

/** Size of the intersection of two ascending id arrays. */
function sortedOverlap(a: Uint32Array, b: Uint32Array): number {
  let count = 0;
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] ?? 0;
    const y = b[j] ?? 0;
    if (x === y) {
      count++;
      i++;
      j++;
    } else if (x < y) i++;
    else j++;
  }
  return count;
}

/**
 * The indices of at most {@link MAX_RANKED_SENTENCES} sentences allowed into the TextRank graph,
 * ascending. When there are more, a sentence's score is the mean, over its content words, of
 * how often that word occurs in the whole document (a sentence made of the document's frequent
 * words is likely central); the highest-scoring ones are kept, ties going to the earlier one.
 */
export function preselect(tokens: readonly string[][]): number[] {
  const all = tokens.map((_, i) => i);
  if (tokens.length <= MAX_RANKED_SENTENCES) return all;
  const frequency = new Map<string, number>();
  for (const ts of tokens) for (const t of ts) frequency.set(t, (frequency.get(t) ?? 0) + 1);
  const score = tokens.map((ts) =>
    ts.length === 0 ? 0 : ts.reduce((sum, t) => sum + (frequency.get(t) ?? 0), 0) / ts.length,
  );
  return all
    .sort((a, b) => (score[b] ?? 0) - (score[a] ?? 0) || a - b)
    .slice(0, MAX_RANKED_SENTENCES)
    .sort((a, b) => a - b);
}

/**
 * Extractive summary: the `maxSentences` sentences of `text` with the highest TextRank score
 * (see {@link textRankScores}; ties go to the earlier sentence), returned in document order.
 * Returns every sentence when there are at most `maxSentences`, and `[]` for text without any.
 * Long documents are first cut down to {@link MAX_RANKED_SENTENCES} candidates ({@link preselect}).
 */
export function summarise(text: string, maxSentences: number): string[] {
  const sentences = splitSentences(text);
  if (sentences.length <= maxSentences) return sentences;
  const tokens = sentences.map(contentTokens);
  const candidates = preselect(tokens);
  const scores = textRankScores(candidates.map((i) => tokens[i] ?? []));
  return candidates
    .map((sentence, k) => ({ sentence, score: scores[k] ?? 0 }))
    .sort((a, b) => b.score - a.score || a.sentence - b.sentence)
    .slice(0, maxSentences)
    .sort((a, b) => a.sentence - b.sentence)
    .map(({ sentence }) => sentences[sentence] ?? "");
}

/** Characters of text per map step (about 4,000 tokens of English); a shorter text is summarised in one call. */
export const MAP_CHUNK_CHARS = 16_000;
/** Map steps run at once per command. */
export const MAP_CONCURRENCY = 3;
/** Texts longer than this (UTF-16 units) report live progress on the offline path too. */
export const LONG_TEXT_CHARS = 64 * 1024;

/**
 * Cuts `text` into pieces of at most `max` characters at paragraph, else sentence, else word
 * boundaries (a piece is cut mid-word only when one word is longer than `max`), in order.
 */
export function chunkText(text: string, max: number): string[] {
  const chunks: string[] = [];
  let current = "";
  const flush = () => {
    if (current.trim()) chunks.push(current.trim());
    current = "";
  };
  const add = (unit: string, sep: string) => {
    if (current.length + sep.length + unit.length <= max) {
      current = current ? current + sep + unit : unit;
      return true;
    }
    return false;
  };
  for (const paragraph of text.split(/\n\s*\n/)) {
    if (add(paragraph, "\n\n")) continue;
    flush();
    if (add(paragraph, "")) continue;
    for (const sentence of paragraph.split(/(?<=[.!?。！？])\s+/)) {
      if (add(sentence, " ")) continue;
      flush();
      if (add(sentence, "")) continue;
      for (const word of sentence.split(/\s+/)) {
        if (add(word, " ")) continue;
        flush();
        for (let i = 0; i < word.length; i += max) {
          current = word.slice(i, i + max);
          if (current.length === max) flush();
        }
      }
    }
  }
  flush();
  return chunks;
}

/** Splits a model's summary into sentences (after . ! ? 。 and their full-width forms). */
function summarySentences(summary: string): string[] {
  return summary
    .split(/(?<=[.!?。！？])\s+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

/** Runs `fn` over `items` with at most `limit` at once; results in order. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The model path: map-reduce. The text is cut into {@link MAP_CHUNK_CHARS} pieces; each piece's
 * key points are asked for (stage `map`, {@link MAP_CONCURRENCY} at once); the points of all
 * pieces (or the text itself, when it is one piece) are then summarised in one call (stage
 * `reduce`, its text streamed live). When the points are themselves longer than a piece, they
 * are mapped again first. A coarse `command.progress` report marks the start of `map` and of
 * `reduce` (only when there is more than one piece); live progress gives the percentage.
 */
async function modelSummary(params: ParamsOf<"doc.summary.create">, ctx: HandlerContext, language: string) {
  const maxSentences = params.max_sentences ?? DEFAULT_MAX_SENTENCES;
  let material = params.text;
  let chunks = chunkText(material, MAP_CHUNK_CHARS);
  const mapped = chunks.length > 1;
  let round = 0;
  while (chunks.length > 1) {
    round++;
    await ctx.progress(round === 1 ? "map" : `map.${round}`);
    let done = 0;
    ctx.live({ stage: "map", percent: 0 });
    const points = await mapLimit(chunks, MAP_CONCURRENCY, async (chunk, i) => {
      const r = await ctx.llm.generate(
        {
          task: "summary.map",
          system: summaryMapSystemPrompt(language),
          user: dataMessage(`Excerpt ${i + 1} of ${chunks.length}.`, { excerpt: chunk }),
          schema: SummaryMapAnswer,
          maxOutputTokens: 800,
        },
        llmCallOf(ctx, "map"),
      );
      done++;
      ctx.live({ stage: "map", percent: Math.round((done / chunks.length) * 100) });
      return r.value.points.map((p) => `- ${p}`).join("\n");
    });
    material = points.join("\n\n");
    chunks = chunkText(material, MAP_CHUNK_CHARS);
  }
  if (mapped) await ctx.progress("reduce");
  ctx.live({ stage: "reduce", percent: 0 });
  const r = await ctx.llm.generate(
    {
      task: "summary.reduce",
      system: summaryReduceSystemPrompt(language, maxSentences),
      user: dataMessage(mapped ? "Key points of the document's parts, in order." : "The document.", {
        [mapped ? "points" : "document"]: material,
      }),
      schema: SummaryReduceAnswer,
      maxOutputTokens: 300 + maxSentences * 120,
      streamField: "summary",
    },
    llmCallOf(ctx, "reduce"),
  );
  const sentences = summarySentences(r.value.summary).slice(0, maxSentences);
  return { summary: sentences.join(" "), sentences, language, provider: r.provider, model: r.model };
}

/** The offline path: TextRank, with live progress for long texts. */
async function offlineSummary(params: ParamsOf<"doc.summary.create">, ctx: HandlerContext, language: string) {
  const long = params.text.length > LONG_TEXT_CHARS;
  if (long) {
    await ctx.progress("ranking");
    ctx.live({ stage: "ranking", percent: 0 });
  }
  const sentences = summarise(params.text, params.max_sentences ?? DEFAULT_MAX_SENTENCES);
  if (sentences.length === 0) {
    throw new HandlerError("VALIDATION_FAILED", "The text contains no sentences to summarise", false);
  }
  if (long) ctx.live({ stage: "ranking", percent: 100 });
  return { summary: sentences.join(" "), sentences, language, provider: "offline" };
}

/**
 * `doc.summary.create`: a summary `{ summary, sentences, language, provider, model? }` of
 * `params.text` (≤ 1 MiB UTF-8) in the text's language (detected; else the profile's locale).
 *
 * - With model providers: map-reduce ({@link modelSummary}); `sentences` are the model's.
 * - Without (or when every provider failed and `offline` ends the chain): the extractive
 *   TextRank summary (Mihalcea & Tarau, 2004): the top `max_sentences` (default
 *   {@link DEFAULT_MAX_SENTENCES}) sentences in document order, `provider: "offline"`.
 * - Errors: `VALIDATION_FAILED` (not retryable) when the text contains no sentence at all
 *   (offline); the chain's `LLM_*` codes.
 */
export const docSummaryHandler = defineHandler("doc.summary.create", async (params, ctx): Promise<DocSummaryResult> => {
  const language = detectLanguage(params.text.slice(0, 20_000)) ?? ctx.profile.locale ?? "en";
  if (ctx.llm.providers.length === 0) return offlineSummary(params, ctx, language);
  try {
    return await modelSummary(params, ctx, language);
  } catch (err) {
    if (!answerOffline(ctx, err)) throw err;
    ctx.logger.warn({ err }, "summary:offline-fallback");
    return offlineSummary(params, ctx, language);
  }
});

import type { DraftEmailRequest } from "../handler.ts";
import { HandlerError } from "../handler.ts";
import { baseLanguage } from "./language.ts";

type Tone = DraftEmailRequest["tone"];
/** Languages with their own phrase table; every other language falls back to English. */
type PhraseLanguage = "en" | "de" | "ko";

/** A recipient name derived from an email address: `first` for casual greetings, `full` for formal ones. */
export interface RecipientName {
  first: string;
  full: string;
}

/** The fixed phrases of one tone in one language. */
interface TonePhrases {
  greeting(name: RecipientName | undefined): string;
  /** A short first paragraph that sets the tone; German phrases start lower-case after the greeting's comma. */
  opening?: string;
  closing: string;
  /** The complimentary close; English puts a comma after it, German does not. */
  signOff: string;
  /** The line with the sender's name under the sign-off (Korean: "<name> 드림"). */
  signature?: (name: string) => string;
}

/** Korean greetings: the recipient's name with the honorific 님. */
const koName = (n: RecipientName | undefined) => (n ? `${n.full}님` : undefined);

const PHRASES: Record<PhraseLanguage, Record<Tone, TonePhrases>> = {
  en: {
    neutral: {
      greeting: (n) => (n ? `Hello ${n.first},` : "Hello,"),
      closing: "Please let me know if you have any questions.",
      signOff: "Best regards,",
    },
    friendly: {
      greeting: (n) => (n ? `Hi ${n.first},` : "Hi there,"),
      opening: "I hope you are doing well!",
      closing: "Just let me know if anything is unclear. I am always happy to help!",
      signOff: "Best wishes,",
    },
    formal: {
      greeting: (n) => (n ? `Dear ${n.full},` : "Dear Sir or Madam,"),
      opening: "I hope this message finds you well.",
      closing: "Should you require any further information, please do not hesitate to contact me.",
      signOff: "Yours sincerely,",
    },
    firm: {
      greeting: (n) => (n ? `Dear ${n.first},` : "Hello,"),
      closing: "Please confirm by return that you have received this message and how you will proceed.",
      signOff: "Regards,",
    },
    apologetic: {
      greeting: (n) => (n ? `Dear ${n.first},` : "Hello,"),
      opening: "First of all, please accept my apologies for any inconvenience.",
      closing: "Once again, I am sorry for the trouble, and thank you for your understanding.",
      signOff: "Kind regards,",
    },
  },
  de: {
    neutral: {
      greeting: (n) => (n ? `Hallo ${n.first},` : "Guten Tag,"),
      opening: "ich schreibe Ihnen wegen des folgenden Anliegens.",
      closing: "Bei Fragen melden Sie sich gerne.",
      signOff: "Viele Grüße",
    },
    friendly: {
      greeting: (n) => (n ? `Hallo ${n.first},` : "Hallo zusammen,"),
      opening: "ich hoffe, es geht Ihnen gut!",
      closing: "Melden Sie sich einfach, wenn etwas unklar ist. Ich helfe gerne!",
      signOff: "Herzliche Grüße",
    },
    formal: {
      greeting: (n) => (n ? `Guten Tag ${n.full},` : "Sehr geehrte Damen und Herren,"),
      opening: "ich wende mich mit folgendem Anliegen an Sie.",
      closing: "Für Rückfragen stehe ich Ihnen jederzeit gerne zur Verfügung.",
      signOff: "Mit freundlichen Grüßen",
    },
    firm: {
      greeting: (n) => (n ? `Guten Tag ${n.first},` : "Guten Tag,"),
      opening: "ich muss Sie auf den folgenden Punkt deutlich hinweisen.",
      closing: "Bitte bestätigen Sie mir umgehend den Erhalt dieser Nachricht und Ihr weiteres Vorgehen.",
      signOff: "Freundliche Grüße",
    },
    apologetic: {
      greeting: (n) => (n ? `Hallo ${n.first},` : "Guten Tag,"),
      opening: "zunächst bitte ich vielmals um Entschuldigung für die Unannehmlichkeiten.",
      closing: "Nochmals Entschuldigung für die Umstände und vielen Dank für Ihr Verständnis.",
      signOff: "Beste Grüße",
    },
  },
  ko: {
    neutral: {
      greeting: (n) => (n ? `안녕하세요, ${koName(n)}.` : "안녕하세요."),
      opening: "다름이 아니라 다음 건으로 연락드립니다.",
      closing: "궁금하신 점이 있으시면 언제든지 말씀해 주세요.",
      signOff: "감사합니다.",
      signature: (name) => `${name} 드림`,
    },
    friendly: {
      greeting: (n) => (n ? `안녕하세요, ${koName(n)}!` : "안녕하세요!"),
      opening: "잘 지내고 계시지요?",
      closing: "편하실 때 언제든 연락 주세요!",
      signOff: "감사합니다.",
      signature: (name) => `${name} 드림`,
    },
    formal: {
      greeting: (n) => (n ? `안녕하십니까, ${koName(n)}.` : "안녕하십니까."),
      opening: "항상 협조해 주셔서 진심으로 감사드립니다.",
      closing: "추가로 필요하신 사항이 있으시면 언제든지 연락 주시기 바랍니다.",
      signOff: "감사합니다.",
      signature: (name) => `${name} 드림`,
    },
    firm: {
      greeting: (n) => (n ? `안녕하세요, ${koName(n)}.` : "안녕하세요."),
      opening: "다음 사항을 분명히 말씀드리고자 합니다.",
      closing: "내용을 확인하신 후 향후 진행 방향과 함께 회신 부탁드립니다.",
      signOff: "감사합니다.",
      signature: (name) => `${name} 드림`,
    },
    apologetic: {
      greeting: (n) => (n ? `안녕하세요, ${koName(n)}.` : "안녕하세요."),
      opening: "먼저 불편을 드려 대단히 죄송합니다.",
      closing: "다시 한번 양해를 부탁드리며, 이해해 주셔서 감사합니다.",
      signOff: "감사합니다.",
      signature: (name) => `${name} 드림`,
    },
  },
};

/** Korean manner adverbs ("politely", "briefly", …): how to write, not what to say; dropped. */
const KOREAN_MANNER_WORDS = new Set([
  "정중히",
  "정중하게",
  "공손히",
  "공손하게",
  "예의 바르게",
  "간단히",
  "간단하게",
  "짧게",
  "빠르게",
  "부드럽게",
  "단호하게",
  "친절하게",
  "좀",
]);

/** How English drafts turn the brief into first person, per tone (see {@link restateInFirstPerson}). */
interface EnglishLeads {
  /** Precedes the first instruction of the brief: "I would like to" + "decline the offer". */
  action: string;
  /** Precedes a first statement of the brief: "I would like to inform you that" + "the report is late". */
  statement: string;
}

const ENGLISH_LEADS: Record<Tone, EnglishLeads> = {
  neutral: { action: "I am writing to", statement: "I am writing to let you know that" },
  friendly: { action: "I wanted to reach out to", statement: "I wanted to let you know that" },
  formal: { action: "I would like to", statement: "I would like to inform you that" },
  firm: { action: "I need to", statement: "I need to make clear that" },
  apologetic: { action: "I am writing to", statement: "I am sorry to let you know that" },
};

/** Adverbs that describe how to write rather than what to say ("Politely decline …"); dropped from the text. */
const MANNER_WORDS = new Set([
  "politely",
  "kindly",
  "please",
  "gently",
  "firmly",
  "briefly",
  "quickly",
  "nicely",
  "warmly",
  "respectfully",
  "formally",
]);

/** Verbs that start an instruction to the writer ("Decline the offer", "Ask Kim for …"). */
const IMPERATIVE_VERBS = new Set([
  "accept",
  "agree",
  "announce",
  "apologise",
  "apologize",
  "approve",
  "arrange",
  "ask",
  "book",
  "cancel",
  "chase",
  "check",
  "clarify",
  "confirm",
  "congratulate",
  "decline",
  "explain",
  "follow",
  "inform",
  "introduce",
  "invite",
  "let",
  "mention",
  "notify",
  "offer",
  "propose",
  "recommend",
  "reject",
  "remind",
  "request",
  "reschedule",
  "schedule",
  "send",
  "share",
  "suggest",
  "tell",
  "thank",
  "update",
  "welcome",
]);

/** First words of a statement that read naturally after "…let you know that". */
const STATEMENT_STARTS = new Set([
  "a",
  "all",
  "an",
  "i",
  "it",
  "my",
  "our",
  "some",
  "that",
  "the",
  "there",
  "these",
  "this",
  "those",
  "we",
  "your",
]);

/** Mailbox names that are not a person ("info@…", "support@…"); the greeting then has no name. */
const ROLE_MAILBOXES = new Set([
  "admin",
  "billing",
  "contact",
  "hello",
  "help",
  "hr",
  "info",
  "jobs",
  "mail",
  "marketing",
  "noreply",
  "office",
  "press",
  "sales",
  "service",
  "support",
  "team",
]);

/** Words kept lower-case inside an English title unless first or last (Chicago-style short words). */
const TITLE_SMALL_WORDS = new Set([
  "a",
  "an",
  "and",
  "as",
  "at",
  "but",
  "by",
  "for",
  "in",
  "nor",
  "of",
  "on",
  "or",
  "per",
  "the",
  "to",
  "via",
  "vs",
  "with",
]);

/** The longest subject the provider derives from a brief, in characters. */
export const MAX_DERIVED_SUBJECT_LENGTH = 80;

/**
 * A deterministic, template-based offline drafting provider. **It is not a language model**:
 * it does not understand the brief, it arranges the brief's own sentences inside fixed,
 * per-tone phrase templates. It needs no network and no API key, always returns the same
 * draft for the same request, and is the default provider until a real model is configured.
 *
 * The draft it writes:
 * - **greeting** with the recipient's name derived from the address's local part
 *   (`kim@example.com` → "Kim", `anna.schmidt@…` → "Anna" / formally "Anna Schmidt");
 *   role mailboxes such as `info@` or `support@` get a greeting without a name;
 * - an optional **opening** sentence that sets the tone;
 * - the **brief**, restated: manner adverbs ("politely") are dropped and, in English, the
 *   first instruction is turned into first person ("Decline the offer" → "I would like to
 *   decline the offer." in the formal tone; the recipient's name becomes "you"); later
 *   instructions become "I would also like to …"; paragraphs of the brief are kept;
 * - a per-tone **closing** paragraph and **sign-off**, followed by `senderName` when given.
 *
 * Tones: `neutral`, `friendly`, `formal`, `firm`, `apologetic` (each with its own phrasing).
 * Languages: `en`, `de` and `ko` (the base of a tag such as `de-DE`) have phrase tables; any
 * other language falls back to English. The brief itself is never translated.
 *
 * Korean (`ko`): "안녕하세요, <name>님." (formal "안녕하십니까"), a tone opening, the brief restated
 * in the first person — manner adverbs such as 정중히 dropped and a request to the writer
 * ("…을 거절해 주세요") turned into the writer's statement ("…을 거절하고자 합니다.") — a closing,
 * "감사합니다." and "<sender> 드림". The subject is the brief's topic as a short noun phrase
 * ("공급업체의 제안 거절 건"), never the brief itself.
 *
 * Subject: `req.subject` when given, else the brief's first sentence without manner adverbs,
 * title-cased in English (sentence case otherwise) and cut at a word boundary to at most
 * {@link MAX_DERIVED_SUBJECT_LENGTH} characters (with "…").
 */
export class OfflineDraftProvider {
  /** The provider name results carry (`provider: "offline"`). */
  readonly name = "offline";

  /**
   * Drafts an email from `req`; the body's paragraphs are separated by blank lines.
   * @throws {HandlerError} `VALIDATION_FAILED` (not retryable) when the brief has no words;
   *   the signal's reason when `signal` is already aborted.
   */
  async draftEmail(req: DraftEmailRequest, signal: AbortSignal): Promise<{ subject: string; body: string }> {
    signal.throwIfAborted();
    const briefParagraphs = splitParagraphs(req.brief);
    if (briefParagraphs.length === 0) {
      throw new HandlerError("VALIDATION_FAILED", "The brief contains no text to draft from", false);
    }
    const language = phraseLanguage(req.language);
    const phrases = PHRASES[language][req.tone];
    const recipient = req.to === undefined ? undefined : recipientName(req.to);

    const content =
      language === "en"
        ? restateInFirstPerson(briefParagraphs, ENGLISH_LEADS[req.tone], recipient)
        : language === "ko"
          ? restateKorean(req.brief)
          : briefParagraphs.map(joinSentences);
    const paragraphs = [phrases.greeting(recipient), phrases.opening, ...content, phrases.closing];
    const sender = req.senderName?.trim();
    const signature = sender
      ? `${phrases.signOff}\n${phrases.signature ? phrases.signature(sender) : sender}`
      : phrases.signOff;
    const body = [...paragraphs.filter((p): p is string => p !== undefined), signature].join("\n\n");

    const subject =
      req.subject?.trim() || (language === "ko" ? koreanSubject(req.brief) : deriveSubject(briefParagraphs, language));
    return { subject, body };
  }
}

/** The phrase table for a language tag: its base language when known, else English. */
function phraseLanguage(tag: string): PhraseLanguage {
  const base = baseLanguage(tag);
  return base === "de" || base === "ko" ? base : "en";
}

/** Korean sentences of a brief, by paragraph: split after . ! ? 。 and at line breaks. */
function koreanParagraphs(brief: string): string[][] {
  return brief
    .split(/\n\s*\n/)
    .map((p) =>
      p
        .split(/(?<=[.!?。！？])\s+|\n+/)
        .map((x) => x.trim())
        .filter((x) => /[\p{L}\p{N}]/u.test(x)),
    )
    .filter((p) => p.length > 0);
}

/** Drops Korean manner adverbs (정중히, 간단히, …) anywhere in a sentence. */
function stripKoreanManner(sentence: string): string {
  let out = ` ${sentence} `;
  for (const w of KOREAN_MANNER_WORDS) out = out.replaceAll(` ${w} `, " ");
  return out.replace(/\s+/g, " ").trim();
}

/**
 * A Korean request to the writer as the writer's statement: "…해 주세요/하세요/해 주십시오" →
 * "…하고자 합니다.", other "…어/아 주세요" → "… 드리고자 합니다." (what one does for the
 * reader); anything else is kept, with a final full stop.
 */
function koreanStatement(sentence: string): string {
  const s = stripKoreanManner(sentence).replace(/[.!?。！？]+$/, "");
  const request = /(?:\s?주세요|\s?주십시오|\s?주시기\s?바랍니다|\s?줘요|\s?줘)$/;
  if (/해$/.test(s.replace(request, "")) && request.test(s))
    return `${s.replace(request, "").replace(/해$/, "하")}고자 합니다.`;
  if (/하(?:세요|십시오)$/.test(s)) return `${s.replace(/(?:세요|십시오)$/, "")}고자 합니다.`;
  if (request.test(s)) return `${s.replace(request, "")} 드리고자 합니다.`;
  return `${s}.`;
}

/** The brief restated for a Korean draft (see {@link koreanStatement}), paragraphs kept. */
function restateKorean(brief: string): string[] {
  return koreanParagraphs(brief).map((sentences) => sentences.map(koreanStatement).join(" "));
}

/** Korean object and topic particles at the end of a word (…을/를/은/는). */
const KOREAN_PARTICLE = /(?<=\p{Script=Hangul})(?:을|를|은|는)$/u;

/**
 * A short Korean subject naming the brief's topic: its first sentence without manner adverbs
 * and without the request ending ("해 주세요"), the particle before the final verb noun
 * dropped, then "건" ("공급업체의 제안을 정중히 거절해 주세요" → "공급업체의 제안 거절 건"); at
 * most 40 characters.
 */
function koreanSubject(brief: string): string {
  const first = koreanParagraphs(brief)[0]?.[0] ?? brief;
  let topic = stripKoreanManner(first)
    .replace(/[.!?。！？]+$/, "")
    .replace(/\s?(?:해|하여)?\s?(?:주세요|주십시오|주시기\s?바랍니다|줘요|줘)$/, "")
    .replace(/(?:하세요|하십시오|하기|할 것)$/, "")
    .trim();
  const words = topic.split(" ");
  if (words.length >= 2) {
    const i = words.length - 2;
    words[i] = (words[i] ?? "").replace(KOREAN_PARTICLE, "");
    topic = words.join(" ");
  }
  return truncateAtWord(`${topic} 건`.trim(), 40);
}

/**
 * A person's name from an email address's local part, or `undefined` for role mailboxes and
 * local parts without letters. The `+tag` suffix and digits are ignored; `.`, `_` and `-` separate names.
 */
export function recipientName(address: string): RecipientName | undefined {
  const local = (address.split("@")[0] ?? "").split("+")[0] ?? "";
  const parts = local
    .split(/[._-]+/)
    .map((p) => p.replace(/[^\p{L}]/gu, ""))
    .filter((p) => p.length > 0);
  const [first] = parts;
  if (
    first === undefined ||
    ROLE_MAILBOXES.has(first.toLowerCase()) ||
    ROLE_MAILBOXES.has(parts.join("").toLowerCase())
  ) {
    return undefined;
  }
  const words = parts.map((p) => (p.length === 1 ? `${p.toUpperCase()}.` : capitalise(p.toLowerCase())));
  const full = words.join(" ");
  // An initial alone ("J.") is no name to greet someone with; use the full name then.
  return { first: first.length === 1 ? full : (words[0] ?? full), full };
}

/** The brief's paragraphs (split at blank lines), each as a list of sentences with final punctuation. */
function splitParagraphs(brief: string): string[][] {
  return brief
    .split(/\n\s*\n/)
    .map((p) => p.replace(/\s+/g, " ").trim())
    .filter((p) => /[\p{L}\p{N}]/u.test(p))
    .map((p) =>
      p
        .split(/(?<=[.!?])\s+/)
        .map(stripMannerWords)
        .filter((s) => s.length > 0)
        .map((s) => capitalise(/[.!?]$/.test(s) ? s : `${s}.`)),
    )
    .filter((sentences) => sentences.length > 0);
}

function joinSentences(sentences: string[]): string {
  return sentences.join(" ");
}

/** Drops leading manner adverbs ("Politely", "please") from a sentence. */
function stripMannerWords(sentence: string): string {
  const words = sentence.split(" ");
  let i = 0;
  while (i < words.length - 1 && MANNER_WORDS.has((words[i] ?? "").toLowerCase().replace(/,$/, ""))) i++;
  return words.slice(i).join(" ");
}

/**
 * English restatement: the first instruction gets the tone's action lead ("I would like to
 * decline …"), later ones "I would also like to …"; a first statement that starts with a
 * common word gets the tone's statement lead. Other sentences are kept as written.
 */
function restateInFirstPerson(
  paragraphs: string[][],
  leads: EnglishLeads,
  recipient: RecipientName | undefined,
): string[] {
  let leadUsed = false;
  return paragraphs.map((sentences) =>
    sentences
      .map((sentence) => {
        const firstWord = (sentence.split(" ")[0] ?? "").toLowerCase();
        if (IMPERATIVE_VERBS.has(firstWord)) {
          const lead = leadUsed ? "I would also like to" : leads.action;
          leadUsed = true;
          return `${lead} ${addressRecipient(lowerFirst(sentence), recipient)}`;
        }
        if (!leadUsed && STATEMENT_STARTS.has(firstWord)) {
          leadUsed = true;
          return `${leads.statement} ${firstWord === "i" ? sentence : lowerFirst(sentence)}`;
        }
        leadUsed = true;
        return sentence;
      })
      .join(" "),
  );
}

/** In an instruction, the recipient is the reader: "tell Kim that Kim's report …" → "tell you that your report …". */
function addressRecipient(sentence: string, recipient: RecipientName | undefined): string {
  if (!recipient) return sentence;
  // \b is ASCII-only even with the u flag, so word edges are spelled out for names such as "Zoë".
  const names = `(?<![\\p{L}\\p{N}])(?:${[...new Set([recipient.full, recipient.first])].map(escapeRegExp).join("|")})`;
  return sentence
    .replace(new RegExp(`${names}['’]s(?![\\p{L}\\p{N}])`, "giu"), "your")
    .replace(new RegExp(`${names}(?![\\p{L}\\p{N}])`, "giu"), "you");
}

/** A short subject from the brief's first sentence (see {@link OfflineDraftProvider}). */
function deriveSubject(paragraphs: string[][], language: PhraseLanguage): string {
  const firstSentence = (paragraphs[0]?.[0] ?? "").replace(/[.!?]+$/, "");
  const cased = language === "en" ? titleCase(firstSentence) : capitalise(firstSentence);
  return truncateAtWord(cased, MAX_DERIVED_SUBJECT_LENGTH);
}

/** English title case; words that already carry capitals or digits ("Q3", "iOS", "API") are kept as written. */
function titleCase(text: string): string {
  const words = text.split(" ");
  return words
    .map((word, i) => {
      if (/[\p{Lu}\p{N}]/u.test(word.slice(1))) return word;
      const lower = word.toLowerCase();
      const edge = i === 0 || i === words.length - 1;
      return !edge && TITLE_SMALL_WORDS.has(lower) ? lower : capitalise(lower);
    })
    .join(" ");
}

/** Cuts `text` to at most `max` characters at a word boundary, marking the cut with "…". */
function truncateAtWord(text: string, max: number): string {
  if (text.length <= max) return text;
  const room = text.slice(0, max - 1);
  const cut = room.lastIndexOf(" ");
  return `${(cut > 0 ? room.slice(0, cut) : room).replace(/[\s,;:-]+$/, "")}…`;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

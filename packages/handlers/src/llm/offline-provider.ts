import type { DraftEmailRequest, LlmProvider } from "../handler.ts";
import { HandlerError } from "../handler.ts";

type Tone = DraftEmailRequest["tone"];
/** Languages with their own phrase table; every other language falls back to English. */
type PhraseLanguage = "en" | "de";

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
}

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
};

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
 * Languages: `en` and `de` (the base of a tag such as `de-DE`) have phrase tables; any other
 * language falls back to English. The brief itself is never translated.
 *
 * Subject: `req.subject` when given, else the brief's first sentence without manner adverbs,
 * title-cased in English (sentence case otherwise) and cut at a word boundary to at most
 * {@link MAX_DERIVED_SUBJECT_LENGTH} characters (with "…").
 */
export class OfflineDraftProvider implements LlmProvider {
  readonly name = "offline-template";

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
        : briefParagraphs.map(joinSentences);
    const paragraphs = [phrases.greeting(recipient), phrases.opening, ...content, phrases.closing];
    const signature = req.senderName?.trim() ? `${phrases.signOff}\n${req.senderName.trim()}` : phrases.signOff;
    const body = [...paragraphs.filter((p): p is string => p !== undefined), signature].join("\n\n");

    const subject = req.subject?.trim() || deriveSubject(briefParagraphs, language);
    return { subject, body };
  }
}

/** The phrase table for a language tag: its base language when known, else English. */
function phraseLanguage(tag: string): PhraseLanguage {
  return tag.toLowerCase().split("-")[0] === "de" ? "de" : "en";
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

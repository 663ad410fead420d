/**
 * Language detection and choice for the assistant's output. Detection is by script (reliable
 * for Hangul, kana, Cyrillic, Arabic, Thai) plus a stop-word count for English vs German;
 * anything else is "unknown" and the caller falls back to the requested language or the
 * tenant profile's locale.
 */

const SCRIPTS: readonly [RegExp, string][] = [
  [/\p{Script=Hangul}/u, "ko"],
  [/[\p{Script=Hiragana}\p{Script=Katakana}]/u, "ja"],
  [/\p{Script=Han}/u, "zh"],
  [/\p{Script=Cyrillic}/u, "ru"],
  [/\p{Script=Arabic}/u, "ar"],
  [/\p{Script=Thai}/u, "th"],
];

const EN = new Set("the and to of a in is for that you with on this please be are it".split(" "));
const DE = new Set("der die das und zu den ist nicht bitte mit für sie ein eine wir ich auf".split(" "));

/**
 * The language of `text` as a base tag (`ko`, `ja`, `zh`, `ru`, `ar`, `th`, `en`, `de`), or
 * `undefined` when it cannot be told. A script wins when at least a fifth of the letters
 * are in it (a Korean brief with an English product name is Korean); Latin text is `en` or
 * `de` by stop words, when there are at least two.
 */
export function detectLanguage(text: string): string | undefined {
  const letters = [...text.matchAll(/\p{L}/gu)].map((m) => m[0]);
  if (letters.length === 0) return undefined;
  for (const [re, tag] of SCRIPTS) {
    const n = letters.filter((c) => re.test(c)).length;
    if (n > 0 && n * 5 >= letters.length) return tag;
  }
  const words = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  const en = words.filter((w) => EN.has(w)).length;
  const de = words.filter((w) => DE.has(w)).length;
  if (Math.max(en, de) < 2) return undefined;
  return de > en ? "de" : "en";
}

/** The base language of a tag (`de-DE` → `de`), lower-case. */
export function baseLanguage(tag: string): string {
  return (tag.split(/[-_]/)[0] ?? tag).toLowerCase();
}

/**
 * The output language: the language detected in `text` when it is a non-Latin script (a
 * Hangul brief gets a Korean draft whatever else says), else `requested` (the command's
 * `language`), else the detected Latin language, else the profile `locale`, else `en`.
 * Returned as given (`de-DE` stays `de-DE`) when it comes from `requested` or `locale`.
 */
export function chooseLanguage(o: { text: string; requested?: string; locale?: string }): string {
  const detected = detectLanguage(o.text);
  if (detected && detected !== "en" && detected !== "de") return detected;
  return o.requested ?? detected ?? o.locale ?? "en";
}

/** English name of a language tag, for prompts (`ko` → "Korean"); the tag itself when unknown. */
export function languageName(tag: string): string {
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(tag) ?? tag;
  } catch {
    return tag;
  }
}

/**
 * Korean and English with rosetta (about 300 bytes gzipped; see the README for the choice).
 *
 * The language is the profile's (`snapshot.profile.locale`, e.g. `ko-KR` → Korean), else the
 * browser's first supported one, else English. Dates and times use the same locale tag through
 * `Intl`. A missing message falls back to English, then to the key. English is in the main
 * bundle; Korean is a chunk of its own, loaded when first needed ({@link loadLang}).
 */
import rosetta from "rosetta";
import { en, type Messages } from "./locales/en.ts";

/** localStorage key of the language last shown (to start loading it before the snapshot arrives). */
export const LANG_STORAGE_KEY = "nexus.console.lang";

/** Languages the console speaks. */
export type Lang = "en" | "ko";
/** Every supported language. */
export const LANGS: readonly Lang[] = ["en", "ko"];

const i18n = rosetta<Messages>({ en });
let current: Lang = "en";
i18n.locale(current);
const loaded = new Set<Lang>(["en"]);
const loading = new Map<Lang, Promise<void>>();

/** True when the messages of `l` are loaded. */
export function isLoaded(l: Lang): boolean {
  return loaded.has(l);
}

/** Loads the messages of `l` (once; later calls share the promise). */
export function loadLang(l: Lang): Promise<void> {
  if (loaded.has(l)) return Promise.resolve();
  let p = loading.get(l);
  if (!p) {
    p = import("./locales/ko.ts").then((m) => {
      i18n.set("ko", m.ko);
      loaded.add("ko");
    });
    loading.set(l, p);
  }
  return p;
}

/** The language of a locale tag (`ko-KR` → `ko`), or `null` when it is not supported. */
export function langOf(tag: string | undefined | null): Lang | null {
  const base = (tag ?? "").toLowerCase().split(/[-_]/)[0];
  return (LANGS as readonly string[]).includes(base ?? "") ? (base as Lang) : null;
}

/**
 * Picks the language: the profile's locale when supported, else the first supported of the
 * browser's languages, else English.
 */
export function pickLang(profileLocale: string | undefined | null, browser: readonly string[]): Lang {
  const fromProfile = langOf(profileLocale);
  if (fromProfile) return fromProfile;
  for (const b of browser) {
    const l = langOf(b);
    if (l) return l;
  }
  return "en";
}

/**
 * The locale tag for `Intl` formatting: the profile's locale when it is of language `lang`,
 * else the browser's first tag of that language, else `lang` itself.
 */
export function formatLocale(lang: Lang, profileLocale: string | undefined | null, browser: readonly string[]): string {
  if (profileLocale && langOf(profileLocale) === lang) return profileLocale;
  return browser.find((b) => langOf(b) === lang) ?? lang;
}

/** Sets the current language (its messages must be loaded; see {@link loadLang}). */
export function setLang(lang: Lang): void {
  current = lang;
  i18n.locale(lang);
}

/** The current language. */
export function lang(): Lang {
  return current;
}

/** Parameters of a message. */
export type Params = Record<string, string | number>;

/** The message at `key` in the current language (English, then the key itself, when missing). */
export function t(key: string, params?: Params): string {
  const s = i18n.t(key, params as never);
  if (s) return s;
  return i18n.t(key, params as never, "en") || key;
}

/** True when `key` names a message (in English). */
export function has(key: string): boolean {
  return i18n.t(key, undefined, "en") !== "";
}

/** The human label of a command type (`draft_email.create` → "Draft email"); the raw type when unknown. */
export function typeLabel(type: string): string {
  const key = `types.${type.replace(/\./g, "_")}`;
  return has(key) ? t(key) : type;
}

/** The plain-language text of an error code (the generic one when the code is not known). */
export function errorText(code: string | undefined): string {
  return code && has(`errors.${code}`) ? t(`errors.${code}`) : t("errors.generic");
}

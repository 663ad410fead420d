/** Entry point: renders the console (after the sign-in, in JWT mode) into `#app`; starts loading Korean at once when it will be needed. */
import { render } from "preact";
import "./styles.css";
import { LANG_STORAGE_KEY, loadLang, pickLang } from "./i18n.ts";
import { Root } from "./ui/Root.tsx";

let last: string | null = null;
try {
  last = localStorage.getItem(LANG_STORAGE_KEY);
} catch {
  // No storage.
}
const guess = pickLang(last, navigator.languages ?? [navigator.language]);
if (guess !== "en") void loadLang(guess);

const root = document.getElementById("app");
if (root) {
  root.replaceChildren(); // the static "Loading…" shown until the script ran
  render(<Root />, root);
}

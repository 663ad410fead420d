/**
 * WCAG 2.x contrast for the tenant's accent colour. The accent is used only where it stays
 * readable (a contrast of at least {@link MIN_CONTRAST} against what it sits on); elsewhere the
 * console's own colours are used. Decisions never use the accent: approve is always green and
 * reject always red.
 */

/** WCAG AA for normal text. */
export const MIN_CONTRAST = 4.5;
/** The console's own accent (indigo), used when a tenant's accent would not be readable. */
export const DEFAULT_ACCENT = "#4f46e5";
/** Its counterpart on dark surfaces. */
export const DEFAULT_ACCENT_DARK = "#a5b4fc";
/** Surfaces the accent sits on, per theme (keep in step with styles.css). */
export const SURFACE = { light: "#ffffff", dark: "#1a1d24" } as const;
const DARK_TEXT = "#111318";
const LIGHT_TEXT = "#ffffff";

/** Parses `#rrggbb`; `null` otherwise. */
export function parseHex(hex: string | undefined | null): [number, number, number] | null {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex ?? "");
  return m ? [Number.parseInt(m[1]!, 16), Number.parseInt(m[2]!, 16), Number.parseInt(m[3]!, 16)] : null;
}

/** WCAG relative luminance of `#rrggbb` (0 black … 1 white). @throws Error for another format. */
export function relativeLuminance(hex: string): number {
  const rgb = parseHex(hex);
  if (!rgb) throw new Error(`not a #rrggbb colour: ${hex}`);
  const [r, g, b] = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio of two `#rrggbb` colours (1 … 21). */
export function contrastRatio(a: string, b: string): number {
  const la = relativeLuminance(a);
  const lb = relativeLuminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** The CSS custom properties derived from an accent. */
export interface AccentVars {
  /** Accent as text/outline on a light surface. */
  "--accent-light": string;
  /** Accent as text/outline on a dark surface. */
  "--accent-dark": string;
  /** Fill of primary buttons. */
  "--accent-fill": string;
  /** Text on {@link AccentVars["--accent-fill"]}. */
  "--accent-on": string;
}

/**
 * Where the tenant's `accent` may be used: as text on light and dark surfaces when it reaches
 * {@link MIN_CONTRAST} against them, and as a button fill when white or near-black text on it
 * does; otherwise the console's defaults. An invalid or missing accent gives the defaults.
 */
export function accentVars(accent: string | undefined | null): AccentVars {
  const ok = parseHex(accent) !== null;
  const a = ok ? (accent as string).toLowerCase() : DEFAULT_ACCENT;
  const onLight = ok && contrastRatio(a, SURFACE.light) >= MIN_CONTRAST ? a : DEFAULT_ACCENT;
  const onDark = ok && contrastRatio(a, SURFACE.dark) >= MIN_CONTRAST ? a : DEFAULT_ACCENT_DARK;
  const white = contrastRatio(a, LIGHT_TEXT);
  const dark = contrastRatio(a, DARK_TEXT);
  const fillOk = Math.max(white, dark) >= MIN_CONTRAST;
  return {
    "--accent-light": onLight,
    "--accent-dark": onDark,
    "--accent-fill": fillOk ? a : DEFAULT_ACCENT,
    "--accent-on": fillOk ? (white >= dark ? LIGHT_TEXT : DARK_TEXT) : LIGHT_TEXT,
  };
}

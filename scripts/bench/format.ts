/** Plain-text tables and number formats for the bench's stdout. */

/**
 * Renders rows as an aligned table with a rule under the header. `align` gives each column's
 * alignment (default: the first column left, the others right, as suits numbers).
 */
export function table(header: string[], rows: string[][], align?: ("left" | "right")[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) =>
        (align?.[i] ?? (i === 0 ? "left" : "right")) === "left" ? c.padEnd(widths[i]!) : c.padStart(widths[i]!),
      )
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** Milliseconds with a precision that suits their size; `timeout` for Infinity, `–` for NaN. */
export function ms(v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return "–";
  if (!Number.isFinite(v)) return "timeout";
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return v.toFixed(0);
}

/** An integer with thousands separators; `–` for NaN. */
export function int(v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return "–";
  return Math.round(v).toLocaleString("en-US");
}

/** `a / b` as `0.62×`; `–` when either is missing, zero or not finite. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "–";
  return `${(a / b).toFixed(2)}×`;
}

/** A fraction as a percentage with one decimal (99.9 %). */
export function pct(v: number): string {
  return `${(v * 100).toFixed(v >= 0.999 && v < 1 ? 2 : 1)} %`;
}

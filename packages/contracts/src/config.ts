import { z } from "zod";

/**
 * Splits a comma-separated list into its trimmed, non-empty items:
 * `" a, b,,c "` → `["a", "b", "c"]`.
 */
export function splitList(s: string): string[] {
  return s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
}

/** An environment variable holding a comma-separated list (absent: `[]`), see {@link splitList}. */
export const commaList = z.string().default("").transform(splitList);

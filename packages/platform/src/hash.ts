import { canonicalJson } from "@nexus/contracts";
import { createHash } from "node:crypto";

/** sha256 (hex) of the canonical JSON of `value` (see `canonicalJson` in contracts). */
export function hashCanonical(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

import { hash } from "node:crypto";
import { canonicalJson } from "@nexus/contracts";

/**
 * sha256 (hex) of the canonical JSON of `value` (see `canonicalJson` in contracts), UTF-8
 * encoded. One-shot `crypto.hash` (Node.js ≥ 21.7): no Hash object per call.
 */
export function hashCanonical(value: unknown): string {
  return hash("sha256", canonicalJson(value), "hex");
}

/**
 * The idempotency hash of a command body: what it asks for (`type`, `context`, `params`), not
 * how it is labelled (ids, correlation id, surface). Same command_id + another hash → 409.
 */
export function commandBodyHash(c: {
  type: string;
  context: Record<string, unknown>;
  params: Record<string, unknown>;
}): string {
  return hashCanonical({ type: c.type, context: c.context, params: c.params });
}

/** The hash an ask stores of its action's exact arguments ("approve exactly what runs"). */
export function actionHash(a: { type: string; params: Record<string, unknown> }): string {
  return hashCanonical({ type: a.type, params: a.params });
}

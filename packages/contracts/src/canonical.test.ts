/**
 * `canonicalJson` is RFC 8785 (JSON Canonicalization Scheme) for every value `JSON.parse`
 * produces from I-JSON text, which is what the archive's hash chain relies on: checked against
 * the RFC's own examples and, on many generated values, against the `canonicalize` reference
 * implementation (by JCS's co-author's library line).
 */
import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "./index.ts";

describe("canonicalJson is RFC 8785 (JCS)", () => {
  it("sorts keys by UTF-16 code units (RFC 8785 §3.2.3 example)", () => {
    const input = JSON.parse(
      '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}',
    );
    // (Object.keys would list "1" first: integer-like keys come first in JS objects, so compare the text.)
    const names = ["Carriage Return", "One", "Control", "Latin Small", "Euro Sign", "Emoji", "Hebrew"];
    const text = canonicalJson(input);
    const at = names.map((n) => text.indexOf(n));
    expect(at.every((x, i) => x > 0 && (i === 0 || x > (at[i - 1] as number)))).toBe(true);
    expect(text).toBe(canonicalize(input));
  });

  it("serialises numbers and strings as ECMAScript does (RFC 8785 §3.2.2 examples)", () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    );
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it("equals the canonicalize reference implementation on generated JSON values", () => {
    let state = 42;
    const rnd = () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
    const chars = ["a", "Z", "0", " ", "é", "€", "😀", "\n", '"', "\\", "\u0000", "\u2028", "דּ", "\u007f"];
    const str = () =>
      Array.from({ length: Math.floor(rnd() * 6) }, () => chars[Math.floor(rnd() * chars.length)]).join("");
    const num = () =>
      [0, -0, 1, -1, 0.1, 1e21, 1e-7, 123456789012345680000, 2 ** 53, -(2 ** 31), rnd() * 1e6, rnd() * 1e-6][
        Math.floor(rnd() * 12)
      ] as number;
    const value = (depth: number): unknown => {
      const k = Math.floor(rnd() * (depth > 3 ? 4 : 6));
      if (k === 0) return null;
      if (k === 1) return rnd() < 0.5;
      if (k === 2) return num();
      if (k === 3) return str();
      if (k === 4) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 5) }, () => [str(), value(depth + 1)]));
    };
    for (let i = 0; i < 2000; i++) {
      const v = JSON.parse(JSON.stringify(value(0)));
      expect(canonicalJson(v)).toBe(canonicalize(v));
    }
  });
});

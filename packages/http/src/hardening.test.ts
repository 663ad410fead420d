/**
 * The input guards' checks on their own (the HTTP answers they lead to are tested end to end in
 * test/security/input.test.ts): the path of the first problem in document order, key problems,
 * the depth limit, and URLs.
 */
import { describe, expect, it } from "vitest";
import { checkJson, MAX_URL_LENGTH, urlProblem } from "./hardening.ts";

const nest = (depth: number): unknown => JSON.parse(`${"[".repeat(depth)}1${"]".repeat(depth)}`);

describe("checkJson", () => {
  it("accepts clean values, whatever their shape", () => {
    expect(checkJson({ a: "x", b: [1, true, null, { c: "é😀" }], d: {} })).toBeUndefined();
    expect(checkJson("plain")).toBeUndefined();
    expect(checkJson(nest(32))).toBeUndefined();
  });

  it("names the first problem in document order, by its path", () => {
    const body = { params: { ok: "x", list: ["a", "b\u0000", "c\uD800"] }, later: "\u0000" };
    expect(checkJson(body)).toEqual({ path: "params.list.1", issue: "must not contain NUL characters" });
    expect(checkJson({ a: ["\uDC00x"] })).toEqual({
      path: "a.0",
      issue: "must not contain unpaired UTF-16 surrogates",
    });
    expect(checkJson("\uD800")).toEqual({ path: "", issue: "must not contain unpaired UTF-16 surrogates" });
  });

  it("checks keys as well as values", () => {
    expect(checkJson({ outer: { "k\u0000": 1 } })).toEqual({
      path: "outer.k\u0000",
      issue: "key must not contain NUL characters",
    });
  });

  it("stops at the depth limit, with the path of the level that is too deep", () => {
    expect(checkJson(nest(33))).toEqual({
      path: Array(32).fill("0").join("."),
      issue: "must not nest deeper than 32 levels",
    });
    expect(checkJson({ a: { b: {} } }, 2)).toEqual({ path: "a.b", issue: "must not nest deeper than 2 levels" });
    // Far deeper than the limit: the walk stops there, so the stack is never at risk.
    expect(checkJson(nest(100_000))?.issue).toBe("must not nest deeper than 32 levels");
  });
});

describe("urlProblem", () => {
  it("accepts URLs with and without valid escapes", () => {
    expect(urlProblem("/sidecar/command")).toBeUndefined();
    expect(urlProblem("/history?q=a%20b+c&x=%E2%82%AC")).toBeUndefined();
  });

  it("refuses malformed escapes in the path or the query, and over-long URLs", () => {
    expect(urlProblem("/a%ZZ")?.code).toBe("VALIDATION_FAILED");
    expect(urlProblem("/a?x=%ED%A0%80")?.code).toBe("VALIDATION_FAILED");
    expect(urlProblem(`/${"a".repeat(MAX_URL_LENGTH)}`)?.code).toBe("URI_TOO_LONG");
  });
});

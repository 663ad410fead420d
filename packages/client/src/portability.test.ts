import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = path.dirname(fileURLToPath(import.meta.url));

describe("the SDK core runs in browsers", () => {
  it("no module outside src/cli and src/testing imports a Node built-in or touches process/Buffer", () => {
    const core = fs
      .readdirSync(SRC)
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
      .map((f) => [f, fs.readFileSync(path.join(SRC, f), "utf8")] as const);
    expect(core.map(([f]) => f)).toContain("stream.ts");
    for (const [file, text] of core) {
      expect(text, file).not.toMatch(/from\s+["']node:|require\(|\bprocess\.|\bBuffer\b|NodeJS\./);
      // Every relative import stays inside the core (never into cli/ or testing/).
      for (const m of text.matchAll(/from\s+["'](\.[^"']+)["']/g)) expect(m[1], file).toMatch(/^\.\/[a-z-]+\.ts$/);
    }
  });
});

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { violations } from "../../scripts/check-deps.ts";

/** A throw-away workspace: `files` maps paths to contents (objects are written as JSON). */
function workspace(files: Record<string, string | object>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-deps-"));
  for (const [p, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), typeof c === "string" ? c : JSON.stringify(c));
  }
  return root;
}

const pkg = (
  name: string,
  dependencies: Record<string, string> = {},
  devDependencies: Record<string, string> = {},
) => ({
  name,
  dependencies,
  devDependencies,
});

describe("the dependency rule (scripts/check-deps.ts)", () => {
  it("holds for this repository", () => {
    expect(violations()).toEqual([]);
  });

  it("catches every kind of violation", () => {
    const root = workspace({
      "packages/contracts/package.json": pkg("@nexus/contracts"),
      "packages/contracts/src/index.ts": `export const x = 1;`,
      "packages/core/package.json": pkg("@nexus/core", { "@nexus/contracts": "*", "@nexus/runtime": "*" }),
      // a lower layer importing a higher one
      "packages/core/src/index.ts": `import { x } from "@nexus/contracts";\nimport { y } from "@nexus/runtime";`,
      "packages/runtime/package.json": pkg("@nexus/runtime", {}, { "@nexus/testkit": "*" }),
      // testkit outside test code, and a deep relative import into another package
      "packages/runtime/src/index.ts": `import { t } from "@nexus/testkit";\nimport { z } from "../../core/src/index.ts";`,
      "packages/testkit/package.json": pkg("@nexus/testkit"),
      "packages/testkit/src/index.ts": ``,
      "services/gateway/package.json": pkg("@nexus/gateway", { "@nexus/worker": "*" }),
      // a service importing a service, and an undeclared package
      "services/gateway/src/main.ts": `import { w } from "@nexus/worker";\nimport { q } from "undeclared-lib";`,
      "services/worker/package.json": pkg("@nexus/worker"),
      "services/worker/src/main.ts": ``,
    });
    const v = violations(root).join("\n");
    expect(v).toMatch(/packages\/core\/src\/index.ts: @nexus\/core \(layer 1\) imports @nexus\/runtime \(layer 5\)/);
    expect(v).toMatch(
      /packages\/runtime\/src\/index.ts: imports @nexus\/testkit, which @nexus\/runtime does not list under dependencies/,
    );
    expect(v).toMatch(/packages\/runtime\/src\/index.ts: imports @nexus\/testkit outside test code/);
    expect(v).toMatch(
      /packages\/runtime\/src\/index.ts: relative import \.\.\/\.\.\/core\/src\/index.ts leaves @nexus\/runtime/,
    );
    expect(v).toMatch(/services\/gateway\/src\/main.ts: imports the service @nexus\/worker/);
    expect(v).toMatch(/services\/gateway\/src\/main.ts: imports undeclared-lib/);
  });
});

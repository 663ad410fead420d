import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { docProblems, markdownLinks, repositoryFiles } from "../../scripts/check-docs.ts";

/** A throw-away tree: `files` maps paths to contents. Returns the root and the file list. */
function tree(files: Record<string, string>): { root: string; files: string[] } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-docs-"));
  for (const [p, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), c);
  }
  return { root, files: Object.keys(files) };
}

// Built without the literal, so that this file itself passes the check.
const SPEC = ["..", "shared"].join("/");

describe("the docs check (scripts/check-docs.ts)", () => {
  it("holds for this repository: every relative link resolves, nothing refers outside", () => {
    expect(docProblems()).toEqual([]);
  });

  it("checks every Markdown file of the repository, docs/ included", () => {
    const files = repositoryFiles();
    for (const f of ["README.md", "docs/contract.md", "docs/architecture.md", "docs/operations.md"])
      expect(files).toContain(f);
  });

  it("finds links, images, definitions and inline HTML, but not code", () => {
    const links = markdownLinks(
      [
        "# Title",
        "",
        "See [the contract](docs/contract.md#errors) and ![shot](img/a.png).",
        "",
        "`[not](a-link.md)` and",
        "",
        "```md",
        "[also not](b.md)",
        "```",
        "",
        '<img src="img/b.png" alt="b">',
        "",
        "[ref]: other.md",
      ].join("\n"),
    );
    expect(links.map((l) => l.url)).toEqual(["docs/contract.md#errors", "img/a.png", "img/b.png", "other.md"]);
    expect(links[0]!.line).toBe(3);
  });

  it("reports a missing file, a missing heading, a link out of the tree and any reference to the spec folder", () => {
    const { root, files } = tree({
      "README.md": [
        "# Readme",
        "[ok](docs/a.md) [ok too](docs/a.md#second-part) [dir](docs/) [self](#readme) [web](https://example.org/x.md)",
        "[missing](docs/nope.md)",
        "[no heading](docs/a.md#third)",
        `[outside](${SPEC}/CONTRACT.md)`,
      ].join("\n"),
      "docs/a.md": "# A\n\n## Second part\n\n[up](../README.md) [root](/README.md)\n",
      "src/x.ts": `// see ${SPEC}/ARCHITECTURE.md\nexport const x = 1;\n`,
    });
    const problems = docProblems(root, files);
    expect(problems.map((p) => `${p.file}:${p.line}`).sort()).toEqual(
      ["README.md:3", "README.md:4", "README.md:5", "README.md:5", "src/x.ts:1"].sort(),
    );
    expect(problems.find((p) => p.line === 3)!.message).toMatch(/does not resolve/);
    expect(problems.find((p) => p.line === 4)!.message).toMatch(/no heading #third/);
    expect(problems.filter((p) => p.line === 5).map((p) => p.message)).toEqual(
      expect.arrayContaining([expect.stringMatching(/outside the repository/), expect.stringMatching(/leaves/)]),
    );
  });
});

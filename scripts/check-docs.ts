/**
 * `pnpm check:docs` (part of `pnpm lint`): the repository stands alone.
 *
 * - No file in the repository refers to the specification folder outside it (a parent-relative
 *   `shared/` path or its absolute location): whoever clones the repository has no such folder.
 * - Every relative link of every Markdown file resolves: links, images and link definitions are
 *   taken from the Markdown syntax tree (`mdast-util-from-markdown` with GitHub Flavored Markdown,
 *   so code spans and code blocks are not links), plus `href`/`src` of inline HTML. A link to a
 *   Markdown file's `#fragment` must name one of its headings, slugged as GitHub does
 *   (`github-slugger`).
 *
 * Files are those git knows (tracked, or untracked but not ignored), so `node_modules` and build
 * output never count. Exit code 1 with one line per problem; 0 when none.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import GithubSlugger from "github-slugger";
import type { Heading, Nodes, Root } from "mdast";
import { fromMarkdown } from "mdast-util-from-markdown";
import { gfmFromMarkdown } from "mdast-util-gfm";
import { toString as textOf } from "mdast-util-to-string";
import { gfm } from "micromark-extension-gfm";
import { visit } from "unist-util-visit";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** One problem: file (repository-relative), line (1-based) and what is wrong. */
export interface DocProblem {
  file: string;
  line: number;
  message: string;
}

/**
 * A reference to the specification folder beside the repository: a parent-relative `shared/…` path (any depth) or
 * its absolute path. Written without the literal so this file does not match itself.
 */
const OUTSIDE = new RegExp(`(?:\\.\\./)+${"shared"}\\b|/work/${"shared"}\\b`);

/** Extensions read as text for the {@link OUTSIDE} check. */
const TEXT = /\.(md|ts|tsx|js|mjs|cjs|json|ya?ml|html|css|sh|conf|txt|toml|env|example)$|(^|\/)(Dockerfile|run)$/;

/** The files git knows below `root` (tracked, or untracked and not ignored). */
export function repositoryFiles(root = REPO_ROOT): string[] {
  const out = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  return [...new Set(out.split("\0").filter(Boolean))].filter((f) => fs.existsSync(path.join(root, f)));
}

function parse(markdown: string): Root {
  return fromMarkdown(markdown, { extensions: [gfm()], mdastExtensions: [gfmFromMarkdown()] });
}

const headingCache = new Map<string, Set<string>>();

/** The GitHub anchors of a Markdown file's headings (and explicit `<a name|id="…">`). */
function anchorsOf(file: string): Set<string> {
  const cached = headingCache.get(file);
  if (cached) return cached;
  const text = fs.readFileSync(file, "utf8");
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  visit(parse(text), "heading", (h: Heading) => {
    anchors.add(slugger.slug(textOf(h)));
  });
  for (const m of text.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(m[1] as string);
  headingCache.set(file, anchors);
  return anchors;
}

/** True for links that leave the repository or the page (`https:`, `mailto:`, `//host`). */
function isExternal(url: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(url) || url.startsWith("//");
}

/**
 * Checks one link target written in `file` (repository-relative).
 * @returns why it does not resolve, or `undefined` when it does.
 */
function checkTarget(root: string, file: string, url: string): string | undefined {
  if (isExternal(url)) return undefined;
  const hash = url.indexOf("#");
  const rawPath = hash >= 0 ? url.slice(0, hash) : url;
  const fragment = hash >= 0 ? decodeURIComponent(url.slice(hash + 1)) : "";
  const cleanPath = decodeURIComponent(rawPath.split("?")[0] as string);
  const target = cleanPath
    ? cleanPath.startsWith("/")
      ? path.join(root, cleanPath)
      : path.resolve(root, path.dirname(file), cleanPath)
    : path.join(root, file);
  const rel = path.relative(root, target);
  if (rel.startsWith("..")) return `${url} leaves the repository`;
  if (!fs.existsSync(target)) return `${url} does not resolve (no ${rel})`;
  if (fragment && target.endsWith(".md") && fs.statSync(target).isFile() && !anchorsOf(target).has(fragment))
    return `${url}: ${rel} has no heading #${fragment}`;
  return undefined;
}

/** Every link target of a Markdown text with its line. */
export function markdownLinks(markdown: string): { url: string; line: number }[] {
  const out: { url: string; line: number }[] = [];
  visit(parse(markdown), (node: Nodes) => {
    const line = node.position?.start.line ?? 0;
    if (node.type === "link" || node.type === "image" || node.type === "definition") out.push({ url: node.url, line });
    else if (node.type === "html")
      for (const m of node.value.matchAll(/\b(?:href|src)\s*=\s*"([^"]*)"/g)) out.push({ url: m[1] as string, line });
  });
  return out;
}

/** Every problem of the repository at `root` (see the module doc). */
export function docProblems(root = REPO_ROOT, files = repositoryFiles(root)): DocProblem[] {
  const problems: DocProblem[] = [];
  for (const file of files) {
    if (!TEXT.test(file)) continue;
    const text = fs.readFileSync(path.join(root, file), "utf8");
    if (OUTSIDE.test(text)) {
      text.split("\n").forEach((l, i) => {
        if (OUTSIDE.test(l))
          problems.push({ file, line: i + 1, message: "refers to the specification folder outside the repository" });
      });
    }
    if (!file.endsWith(".md")) continue;
    for (const { url, line } of markdownLinks(text)) {
      const why = checkTarget(root, file, url);
      if (why) problems.push({ file, line, message: why });
    }
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = docProblems();
  for (const p of problems) console.error(`${p.file}:${p.line}: ${p.message}`);
  if (problems.length > 0) {
    console.error(`check-docs: ${problems.length} problem(s)`);
    process.exit(1);
  }
  console.log("docs: every relative link resolves; nothing refers outside the repository");
}

/**
 * `pnpm check:deps`: the dependency rule of the workspace, checked from the code's own imports.
 *
 * - Packages form layers; a package imports only packages of earlier layers:
 *   contracts → core → handlers → messaging → http → runtime → client → testkit → console.
 * - Services import packages, never another service, and never the console.
 * - `@nexus/testkit` (and every other devDependency) only from test code: sources that ship
 *   import only what their package.json lists under `dependencies`, so a production install
 *   (`pnpm install --prod`) has everything a service needs.
 * - No relative import leaves its package (no deep imports into another package's `src/`).
 *
 * Exit code 1 with one line per violation; 0 when the rule holds.
 */
import fs from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The package layers, in order: a package may import only packages listed before it. */
export const LAYERS = [
  "contracts",
  "core",
  "handlers",
  "messaging",
  "http",
  "runtime",
  "client",
  "testkit",
  "console",
] as const;

interface Project {
  kind: "package" | "service";
  name: string;
  dir: string;
  pkg: { name: string; dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
}

function projects(root: string): Project[] {
  const out: Project[] = [];
  for (const kind of ["packages", "services"] as const) {
    if (!fs.existsSync(path.join(root, kind))) continue;
    for (const name of fs.readdirSync(path.join(root, kind))) {
      const dir = path.join(root, kind, name);
      const file = path.join(dir, "package.json");
      if (!fs.existsSync(file)) continue;
      out.push({
        kind: kind === "packages" ? "package" : "service",
        name,
        dir,
        pkg: JSON.parse(fs.readFileSync(file, "utf8")),
      });
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name === "node_modules" || e.name === "dist") continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|tsx)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
    }
  };
  for (const sub of ["src", "test", "scripts"]) if (fs.existsSync(path.join(dir, sub))) walk(path.join(dir, sub));
  return out;
}

/** Test code: test files, test folders, test helpers and scripts run by developers only. */
function isTestCode(project: Project, file: string): boolean {
  const rel = path.relative(project.dir, file);
  return (
    /\.test\.tsx?$/.test(file) ||
    rel.startsWith(`test${path.sep}`) ||
    rel.startsWith(`scripts${path.sep}`) ||
    /(^|\/)(test-context|testing\/)/.test(rel.split(path.sep).join("/"))
  );
}

const IMPORT_RE =
  /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file: string): { spec: string; typeOnly: boolean }[] {
  const text = fs.readFileSync(file, "utf8");
  const out: { spec: string; typeOnly: boolean }[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    if (spec) out.push({ spec, typeOnly: /^\s*(?:import|export)\s+type\s/.test(m[0].trim()) });
  }
  return out;
}

function packageName(spec: string): string {
  return spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] as string);
}

const BUILTINS = new Set(builtinModules);

/** Every violation of the rule in the workspace at `root` (default: this repository). */
export function violations(root = REPO_ROOT): string[] {
  const all = projects(root);
  const byPkg = new Map(all.map((p) => [p.pkg.name, p]));
  const bad: string[] = [];
  for (const project of all) {
    const deps = project.pkg.dependencies ?? {};
    const devDeps = project.pkg.devDependencies ?? {};
    for (const file of sourceFiles(project.dir)) {
      const rel = path.relative(root, file);
      const test = isTestCode(project, file);
      for (const { spec, typeOnly } of importsOf(file)) {
        if (spec.startsWith(".")) {
          const target = path.resolve(path.dirname(file), spec);
          if (!target.startsWith(project.dir + path.sep))
            bad.push(`${rel}: relative import ${spec} leaves ${project.pkg.name}`);
          continue;
        }
        if (spec.startsWith("node:") || BUILTINS.has(spec)) continue;
        const name = packageName(spec);
        const declared = name in deps || (test && name in devDeps);
        if (!declared && !(typeOnly && name in devDeps))
          bad.push(
            `${rel}: imports ${name}, which ${project.pkg.name} does not list under ${test ? "dependencies or devDependencies" : "dependencies"}`,
          );
        const target = byPkg.get(name);
        if (!target) continue;
        if (target.kind === "service") {
          bad.push(`${rel}: imports the service ${name} (no service imports a service)`);
          continue;
        }
        const to = LAYERS.indexOf(target.name as (typeof LAYERS)[number]);
        if (project.kind === "package") {
          const from = LAYERS.indexOf(project.name as (typeof LAYERS)[number]);
          if (from < 0) bad.push(`${project.pkg.name}: not in the layer list of scripts/check-deps.ts`);
          else if (to >= from && !(test && target.name === "testkit"))
            bad.push(
              `${rel}: ${project.pkg.name} (layer ${from}) imports ${name} (layer ${to}); dependencies point to earlier layers only`,
            );
        } else if (target.name === "console") {
          bad.push(`${rel}: a service imports the console`);
        }
        if (target.name === "testkit" && !test) bad.push(`${rel}: imports @nexus/testkit outside test code`);
      }
    }
    if ("@nexus/testkit" in deps) bad.push(`${project.pkg.name}: @nexus/testkit must be a devDependency`);
  }
  return bad;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const bad = violations();
  for (const b of bad) console.error(b);
  console.log(bad.length === 0 ? "dependency rule: ok" : `dependency rule: ${bad.length} violation(s)`);
  process.exit(bad.length === 0 ? 0 : 1);
}

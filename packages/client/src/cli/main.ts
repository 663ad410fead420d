#!/usr/bin/env node
/**
 * `nexus` — the command-line client of NEXUS Console API (see `run.ts` and `nexus --help`).
 * The only module of the CLI that touches `process`: environment, signals, output, exit code.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

type RunModule = typeof import("./run.ts");

/**
 * TEMPORARY: `@nexus/contracts` still has one constructor parameter property
 * (`InvalidSubjectToken` in `tenant.ts`), which Node's default strip-only TypeScript support
 * refuses (ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX). Until contracts is erasable, the CLI runs itself
 * again with `--experimental-transform-types`; once it is, this path is never taken.
 */
async function load(): Promise<RunModule | undefined> {
  try {
    return await import("./run.ts");
  } catch (err) {
    if ((err as { code?: unknown }).code !== "ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX" || process.env.NEXUS_CLI_TRANSFORMED)
      throw err;
    const child = spawn(
      process.execPath,
      [
        "--experimental-transform-types",
        "--disable-warning=ExperimentalWarning",
        fileURLToPath(import.meta.url),
        ...process.argv.slice(2),
      ],
      { stdio: "inherit", env: { ...process.env, NEXUS_CLI_TRANSFORMED: "1" } },
    );
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
    child.on("exit", (code, signal) => {
      process.exitCode = code ?? (signal ? 130 : 1);
    });
    return undefined;
  }
}

const mod = await load();
if (mod) {
  const ac = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => ac.abort(new Error(`${sig} received`)));
  // `nexus watch | head` closes stdout early: end quietly instead of with an EPIPE stack trace.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  process.exitCode = await mod.run(process.argv.slice(2), {
    env: process.env,
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    signal: ac.signal,
  });
}

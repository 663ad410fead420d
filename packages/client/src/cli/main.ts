#!/usr/bin/env node
/**
 * `nexus` — the command-line client of NEXUS Console API (see `run.ts` and `nexus --help`).
 * The only module of the CLI that touches `process`: environment, signals, output, exit code.
 */
const mod = await import("./run.ts");
{
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

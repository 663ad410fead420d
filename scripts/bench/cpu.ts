/**
 * CPU accounting from `/proc` (Linux only).
 *
 * A measured process is a *tree*: its root pid plus every live descendant. Its CPU is the sum,
 * over the tree, of `utime + stime + cutime + cstime` from `/proc/<pid>/stat`, in clock ticks
 * (`getconf CLK_TCK`, usually 100 per second). `cutime + cstime` count descendants that already
 * exited and were reaped, so a process that is born or dies inside a measured window is counted
 * once, and a delta between two samples is exact to one tick per process.
 *
 * Postgres is measured the same way, rooted at the postmaster (the pid in `postmaster.pid` of
 * the embedded instance's data directory): the postmaster, every backend, the checkpointer,
 * walwriter and the other auxiliary processes are its children.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";

let ticksPerSecond: number | undefined;

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 when unknown). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface ProcStat {
  ppid: number;
  /** utime + stime + cutime + cstime, clock ticks. */
  ticks: number;
}

/** Reads `/proc/<pid>/stat`; undefined when the process is gone. */
function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may contain spaces: split after the last ')'.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state); utime..cstime are fields 14..17.
  return {
    ppid: Number(f[1]),
    ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
  };
}

/** Every live process: pid → stat. One pass over `/proc`. */
function readAll(): Map<number, ProcStat> {
  const all = new Map<number, ProcStat>();
  for (const name of fs.readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = readStat(pid);
    if (s) all.set(pid, s);
  }
  return all;
}

/**
 * Cumulative CPU of each named process tree, in milliseconds, sampled in one pass over `/proc`.
 * @param roots name → root pid (a tree whose root is gone reads 0).
 * @returns name → CPU milliseconds since each tree's processes started.
 */
export function sampleCpu(roots: Record<string, number>): Record<string, number> {
  const all = readAll();
  const children = new Map<number, number[]>();
  for (const [pid, s] of all) {
    const list = children.get(s.ppid);
    if (list) list.push(pid);
    else children.set(s.ppid, [pid]);
  }
  const msPerTick = 1000 / clockTicksPerSecond();
  const out: Record<string, number> = {};
  for (const [name, root] of Object.entries(roots)) {
    let ticks = 0;
    const stack = all.has(root) ? [root] : [];
    while (stack.length > 0) {
      const pid = stack.pop()!;
      ticks += all.get(pid)?.ticks ?? 0;
      for (const c of children.get(pid) ?? []) stack.push(c);
    }
    out[name] = ticks * msPerTick;
  }
  return out;
}

/** CPU of one window: `end − start` per name, milliseconds. */
export function cpuDelta(start: Record<string, number>, end: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, v] of Object.entries(end)) out[name] = Math.max(0, v - (start[name] ?? 0));
  return out;
}

/**
 * Direct children of `parent` whose command line contains `needle`.
 * @returns their pids (empty when none).
 */
export function childPidsMatching(parent: number, needle: string): number[] {
  const out: number[] = [];
  for (const [pid, s] of readAll()) {
    if (s.ppid !== parent) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(needle)) out.push(pid);
    } catch {}
  }
  return out;
}

/** Direct children of `parent` (pids). */
export function childPids(parent: number): number[] {
  return [...readAll()].filter(([, s]) => s.ppid === parent).map(([pid]) => pid);
}

/**
 * Measures a window: samples `roots` and this process's own CPU, runs `fn`, samples again.
 * @returns `fn`'s value, CPU milliseconds per name in the window (plus `load-generator`: this
 *   process, user + system), and the window's wall time in milliseconds.
 */
export async function measureCpu<T>(
  roots: Record<string, number>,
  fn: () => Promise<T>,
): Promise<{ value: T; cpuMs: Record<string, number>; wallMs: number }> {
  const t0 = performance.now();
  const self0 = process.cpuUsage();
  const s0 = sampleCpu(roots);
  const value = await fn();
  const s1 = sampleCpu(roots);
  const self = process.cpuUsage(self0);
  return {
    value,
    cpuMs: { ...cpuDelta(s0, s1), "load-generator": (self.user + self.system) / 1000 },
    wallMs: performance.now() - t0,
  };
}

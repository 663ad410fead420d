/**
 * `--profile`: our services run with `node --cpu-prof` (V8's sampling profiler, written when a
 * service exits), and this module summarises each `.cpuprofile`: where the process spent its
 * non-idle samples, grouped by package (`fastify`, `pg`, `@nats-io/nats-core`, …), by Node.js
 * internals (`node:internal/…`), by repository file (`services/gateway/src/accept-command.ts`)
 * or by V8 pseudo-frame (`(garbage collector)`, `(program)`). Self time only: a sample counts
 * for the function on top of the stack.
 *
 * Samples before `sinceUs` (the stack's start-up, mostly transpiling TypeScript) are skipped:
 * V8's profile timestamps and `process.hrtime` both read CLOCK_MONOTONIC on Linux.
 */
import fs from "node:fs";
import path from "node:path";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A share of a process's busy samples. */
export interface ProfileShare {
  name: string;
  /** Fraction of the non-idle samples, 0..1. */
  share: number;
}

/** The summary of one profile. */
export interface ProfileSummary {
  service: string;
  /** Non-idle samples counted (about one per millisecond of CPU at the default interval). */
  samples: number;
  byGroup: ProfileShare[];
  byFunction: ProfileShare[];
}

function group(url: string, fn: string, repoRoot: string): string {
  if (!url) return fn.startsWith("(") ? fn : `native ${fn || "(anonymous)"}`;
  const pkg = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return url.split("/").slice(0, 2).join("/");
  const file = url.startsWith("file://") ? url.slice(7) : url;
  return file.startsWith(repoRoot) ? path.relative(repoRoot, file) : file;
}

/**
 * Summarises `<service>.cpuprofile`.
 * @param sinceUs skip samples taken before this CLOCK_MONOTONIC time, microseconds.
 * @param top how many groups and functions to keep (default 12).
 */
export function summariseProfile(
  file: string,
  service: string,
  repoRoot: string,
  sinceUs: number,
  top = 12,
): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const groups = new Map<string, number>();
  const fns = new Map<string, number>();
  let t = p.startTime;
  let n = 0;
  p.samples.forEach((id, i) => {
    t += p.timeDeltas[i] ?? 0;
    if (t < sinceUs) return;
    const f = byId.get(id);
    if (!f || f.functionName === "(idle)") return;
    n++;
    const g = group(f.url, f.functionName, repoRoot);
    groups.set(g, (groups.get(g) ?? 0) + 1);
    const fn = f.url ? `${f.functionName || "(anonymous)"} ${g}:${f.lineNumber + 1}` : g;
    fns.set(fn, (fns.get(fn) ?? 0) + 1);
  });
  const rank = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, c]) => ({ name, share: n ? c / n : 0 }));
  return { service, samples: n, byGroup: rank(groups), byFunction: rank(fns) };
}

/** `NODE_OPTIONS` for a profiled service: its profile goes to `<dir>/<service>.cpuprofile`. */
export function profileNodeOptions(dir: string, service: string): string {
  return [process.env.NODE_OPTIONS, "--cpu-prof", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${service}.cpuprofile`]
    .filter(Boolean)
    .join(" ");
}

/**
 * Open-loop load at a fixed rate, scheduled by wall clock: command `i` is due at
 * `t0 + i / rate`, whatever happened to earlier ones, so a slow system cannot slow the load
 * down and hide its latency (no coordinated omission). Latencies are measured from the command's
 * *scheduled* time, so a late load generator counts against the system too (its lag is
 * reported so that it can be told apart).
 *
 * - end-to-end latency: scheduled send → the completion report for that command_id seen on SSE;
 * - accept latency: scheduled send → the 202 response.
 *
 * A command is lost when its POST did not answer 202, its report said `command.failed`, or no
 * completion arrived within `timeoutMs` of its scheduled time; a lost command is an infinitely
 * slow sample (see stats.ts).
 */
import { randomUUID } from "node:crypto";
import { Pool } from "undici";
import { measureCpu } from "../cpu.ts";
import type { SseFeed } from "../sse-feed.ts";
import { type LatencySummary, summarise } from "../stats.ts";
import type { Target } from "../targets.ts";

/** Options of {@link runOpenLoop}. */
export interface OpenLoopOptions {
  /** Commands per second. */
  rate: number;
  /** How long commands are sent, milliseconds. */
  durationMs: number;
  /** A command without completion this long after its scheduled time is lost, milliseconds. */
  timeoutMs: number;
  /** HTTP connections of the client pool (requests queue in the client beyond them). */
  connections: number;
  /**
   * Stop sending early once more than `maxLost` commands (plus rejected ones) are unfinished
   * this many milliseconds after their scheduled time: the target is overloaded, and every
   * further command would only lengthen the backlog the next phase has to wait out. Commands
   * already sent still get their `timeoutMs`. Absent = never.
   */
  abortAfterMs?: number;
  /** Lost commands tolerated before aborting (with `abortAfterMs`). */
  maxLost?: number;
}

/** The outcome of one open-loop phase. */
export interface OpenLoopResult {
  /** Commands per second asked for. */
  rate: number;
  /** Commands the phase would send without stopping early (rate × duration). */
  planned: number;
  sent: number;
  /** Answered 202. */
  accepted: number;
  /** Answered other than 202 or failed at the HTTP level. */
  rejected: number;
  /** Completed (`command.completed` seen) within the timeout. */
  completed: number;
  /** Reported `command.failed`. */
  failed: number;
  /** sent − completed. */
  lost: number;
  /** True when the phase stopped early (see `abortAfterMs`). */
  aborted: boolean;
  /** End-to-end latency, ms, over every sent command (lost = Infinity). */
  e2e: LatencySummary;
  /** POST → 202 latency, ms, over every sent command (non-202 = Infinity). */
  accept: LatencySummary;
  /** Largest delay of an actual send after its scheduled time, ms (load generator lag). */
  maxSendLagMs: number;
  /** Wall time from the first send until every command finished or timed out, ms. */
  wallMs: number;
  /** CPU of each measured process in that window, ms (plus `load-generator`). */
  cpuMs: Record<string, number>;
  /** `cpuMs` divided by `completed`, ms per command. */
  cpuMsPerCommand: Record<string, number>;
  /** Status codes other than 202 and client errors, with counts. */
  errors: Record<string, number>;
}

/**
 * Runs one phase against `target`, reading completions from `feed`.
 * @returns counts, latencies (ms), CPU per process (ms) and per command.
 */
export async function runOpenLoop(target: Target, feed: SseFeed, o: OpenLoopOptions): Promise<OpenLoopResult> {
  const total = Math.max(1, Math.round((o.rate * o.durationMs) / 1000));
  const intervalMs = 1000 / o.rate;
  const scheduled = new Float64Array(total);
  const acceptedAt = new Float64Array(total).fill(Number.NaN);
  const doneAt = new Float64Array(total).fill(Number.NaN);
  const seqOf = new Map<string, number>();
  /** Unfinished commands in send order (a Set keeps insertion order). */
  const pending = new Set<number>();
  const errors: Record<string, number> = {};
  let rejected = 0;
  let failed = 0;
  let maxSendLagMs = 0;
  let aborted = false;
  let wakeUp: (() => void) | undefined;
  const finish = (seq: number, ok: boolean, at: number) => {
    if (!pending.delete(seq)) return;
    if (ok) doneAt[seq] = at;
    if (pending.size === 0) wakeUp?.();
  };

  feed.onReport = (id, outcome, at) => {
    const seq = seqOf.get(id);
    if (seq === undefined) return;
    if (outcome === "failed") failed++;
    finish(seq, outcome === "completed", at);
  };

  const pool = new Pool(target.origin, { connections: o.connections, pipelining: 1 });
  const send = (seq: number) => {
    const id = randomUUID();
    seqOf.set(id, seq);
    pending.add(seq);
    const r = target.request(seq, id);
    pool
      .request({ method: "POST", path: r.path, headers: r.headers, body: r.body })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode === 202) acceptedAt[seq] = performance.now();
        else {
          rejected++;
          errors[String(res.statusCode)] = (errors[String(res.statusCode)] ?? 0) + 1;
          finish(seq, false, performance.now());
        }
      })
      .catch((err: Error) => {
        rejected++;
        errors[err.name] = (errors[err.name] ?? 0) + 1;
        finish(seq, false, performance.now());
      });
  };

  /** Unfinished commands scheduled more than `ageMs` ago. */
  const overdue = (now: number, ageMs: number) => {
    let n = 0;
    for (const seq of pending) {
      if (scheduled[seq]! > now - ageMs) break;
      n++;
    }
    return n;
  };

  const measured = await measureCpu(target.pids(), async () => {
    const t0 = performance.now();
    for (let i = 0; i < total; i++) scheduled[i] = t0 + i * intervalMs;
    let next = 0;
    let lastAbortCheck = t0;
    while (next < total) {
      const now = performance.now();
      while (next < total && scheduled[next]! <= now) {
        maxSendLagMs = Math.max(maxSendLagMs, now - scheduled[next]!);
        send(next++);
      }
      if (o.abortAfterMs !== undefined && now - lastAbortCheck >= 50) {
        lastAbortCheck = now;
        if (overdue(now, o.abortAfterMs) + rejected > (o.maxLost ?? 0)) {
          aborted = true;
          break;
        }
      }
      if (next < total) await new Promise((r) => setTimeout(r, Math.min(5, Math.max(0, scheduled[next]! - now))));
    }
    const sent = next;
    // Commands never sent (abort) are not part of the phase.
    for (let i = sent; i < total; i++) pending.delete(i);
    const deadline = (sent > 0 ? scheduled[sent - 1]! : t0) + o.timeoutMs;
    while (pending.size > 0) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      await new Promise<void>((r) => {
        wakeUp = r;
        setTimeout(r, Math.min(left, 100));
      });
    }
    wakeUp = undefined;
    return sent;
  });
  feed.onReport = undefined;
  await pool.close();

  const sent = measured.value;
  const e2e: number[] = [];
  const accept: number[] = [];
  let completed = 0;
  let accepted = 0;
  for (let i = 0; i < sent; i++) {
    const d = doneAt[i]!;
    const a = acceptedAt[i]!;
    if (Number.isNaN(d)) e2e.push(Number.POSITIVE_INFINITY);
    else {
      completed++;
      e2e.push(d - scheduled[i]!);
    }
    if (Number.isNaN(a)) accept.push(Number.POSITIVE_INFINITY);
    else {
      accepted++;
      accept.push(a - scheduled[i]!);
    }
  }
  const cpuMsPerCommand: Record<string, number> = {};
  for (const [k, v] of Object.entries(measured.cpuMs)) cpuMsPerCommand[k] = completed > 0 ? v / completed : Number.NaN;
  return {
    rate: o.rate,
    planned: total,
    sent,
    accepted,
    rejected,
    completed,
    failed,
    lost: sent - completed,
    aborted,
    e2e: summarise(e2e),
    accept: summarise(accept),
    maxSendLagMs,
    wallMs: measured.wallMs,
    cpuMs: measured.cpuMs,
    cpuMsPerCommand,
    errors,
  };
}

/**
 * Waits until `feed` has been silent for `quietMs` (a backlog left by a lost phase still
 * produces reports), at most `capMs`.
 * @returns true when it went quiet.
 */
export async function waitForQuiet(feed: SseFeed, quietMs: number, capMs: number): Promise<boolean> {
  const end = performance.now() + capMs;
  while (performance.now() < end) {
    if (performance.now() - feed.lastFrameAtMs >= quietMs) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

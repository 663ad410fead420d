/**
 * Process supervision for `pnpm start`: a child that exits on its own is started again after
 * an exponential backoff (0.5 s doubling to 30 s, back to 0.5 s once a run lasted 30 s), and
 * each step is logged in one plain sentence. Ctrl-C stops supervising first, then the child.
 */
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";

/** Backoff before restart number `n` (1-based), ms: 500 · 2^(n-1), at most 30 000. */
export function restartDelayMs(n: number): number {
  return Math.min(30_000, 500 * 2 ** Math.max(0, n - 1));
}

/** A run at least this long resets the backoff, ms. */
export const STABLE_AFTER_MS = 30_000;

/** Options of {@link supervise}. */
export interface SuperviseOptions {
  /** Shown in every log line (`gateway`, `nats-server`, …). */
  name: string;
  /** Starts the child (called again for every restart). */
  spawn(): ChildProcess;
  logger: Logger;
  /** Called once a (re)started child is up, e.g. to wait for its /ready; failures are logged only. */
  ready?(): Promise<void>;
}

/** A supervised child. */
export interface Supervised {
  name: string;
  /** The current child, if running. */
  child(): ChildProcess | undefined;
  /** Restarts so far. */
  restarts(): number;
  /**
   * Stops supervising and stops the child: `signal` (default SIGTERM), then SIGKILL after
   * `killAfterMs` (default 15 000). Resolves once it exited.
   */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<void>;
}

/** Starts `o.spawn()` and keeps it running (see the module doc). */
export function supervise(o: SuperviseOptions): Supervised {
  let child: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let streak = 0;
  let timer: NodeJS.Timeout | undefined;

  const start = () => {
    const startedAt = Date.now();
    const c = o.spawn();
    child = c;
    c.once("exit", (code, signal) => {
      if (child === c) child = undefined;
      if (stopping) return;
      streak = Date.now() - startedAt >= STABLE_AFTER_MS ? 1 : streak + 1;
      const delay = restartDelayMs(streak);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      o.logger.error(
        { child: o.name, code, signal, restart_in_ms: delay },
        `${o.name} ${how}; restarting it in ${(delay / 1000).toFixed(1)} s`,
      );
      timer = setTimeout(() => {
        if (stopping) return;
        restarts++;
        start();
        o.logger.warn({ child: o.name, pid: child?.pid, restarts }, `${o.name} restarted (restart ${restarts})`);
        o.ready?.().catch((err) => o.logger.warn({ err, child: o.name }, `${o.name} is not ready yet`));
      }, delay);
    });
  };
  start();

  return {
    name: o.name,
    child: () => child,
    restarts: () => restarts,
    async stop(signal = "SIGTERM", killAfterMs = 15_000) {
      stopping = true;
      clearTimeout(timer);
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        // Not unref'd: the timer keeps this process alive until the child is really gone.
        const killer = setTimeout(() => c.kill("SIGKILL"), killAfterMs);
        c.once("exit", () => {
          clearTimeout(killer);
          resolve();
        });
        c.kill(signal);
      });
    },
  };
}

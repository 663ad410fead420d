import type { App } from "./app.ts";

/** One readiness check: resolves `true` when its dependency is usable. Must not hang (bound it). */
export type ReadinessCheck = () => Promise<boolean> | boolean;

/** Options of {@link addHealthRoutes}. */
export interface HealthOptions {
  /** Named checks; `/ready` answers 200 only when every one passes. */
  checks: Record<string, ReadinessCheck>;
  /** Checks reported in the body but not failing readiness (e.g. a dependency only some routes need). */
  informational?: Record<string, ReadinessCheck>;
  /** Per-check time limit, ms (default 1000): a check that takes longer fails. */
  timeoutMs?: number;
  /** False while shutting down: `/ready` answers 503 so load balancers stop routing here. */
  accepting?: () => boolean;
  /**
   * Figures reported in the `/ready` body under `details` (e.g. the archiver's lag), never
   * deciding readiness; must not throw (a failure leaves them out).
   */
  details?: () => Promise<Record<string, unknown>> | Record<string, unknown>;
  /**
   * A failing check fails readiness only once it has failed on every call for this long, ms
   * (default 0): a dependency blip shorter than this leaves the service ready (reported as
   * `degraded` in the body) instead of taking every replica out of its Service at once.
   */
  graceMs?: number;
  /** The clock, ms (tests). */
  now?: () => number;
}

async function run(check: ReadinessCheck, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(check),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), timeoutMs);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Adds `GET /health` (the process is alive; never depends on other systems) and `GET /ready`
 * (every check passes, or has been failing for less than `graceMs`; otherwise 503 with the
 * standard error body and the per-check results).
 */
export function addHealthRoutes(app: App, o: HealthOptions): void {
  const timeoutMs = o.timeoutMs ?? 1000;
  const graceMs = o.graceMs ?? 0;
  const now = o.now ?? Date.now;
  /** Per check, since when it has failed without a pass in between. */
  const failingSince = new Map<string, number>();
  app.get("/health", { schema: { hide: true } }, async () => ({ status: "ok" }));
  app.get("/ready", { schema: { hide: true } }, async (_req, reply) => {
    const names = Object.keys(o.checks);
    const infoNames = Object.keys(o.informational ?? {});
    const results = await Promise.all([
      ...names.map((n) => run(o.checks[n] as ReadinessCheck, timeoutMs)),
      ...infoNames.map((n) => run(o.informational?.[n] as ReadinessCheck, timeoutMs)),
    ]);
    const checks = Object.fromEntries([...names, ...infoNames].map((n, i) => [n, results[i]]));
    const details = o.details
      ? {
          details: await Promise.resolve()
            .then(o.details)
            .catch(() => ({})),
        }
      : {};
    const t = now();
    const degraded: string[] = [];
    let failed = false;
    names.forEach((n, i) => {
      if (results[i]) {
        failingSince.delete(n);
        return;
      }
      const since = failingSince.get(n) ?? t;
      failingSince.set(n, since);
      if (t - since < graceMs) degraded.push(n);
      else failed = true;
    });
    const accepting = o.accepting?.() ?? true;
    if (accepting && !failed) return { status: "ready", checks, ...(degraded.length ? { degraded } : {}), ...details };
    return reply.code(503).send({
      error: {
        code: "DEPENDENCY_UNAVAILABLE",
        message: accepting ? "Not ready: a dependency check failed" : "Shutting down",
        recoverable: true,
      },
      checks,
      ...details,
    });
  });
}

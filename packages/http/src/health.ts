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
 * (every check passes; otherwise 503 with the standard error body and the per-check results).
 */
export function addHealthRoutes(app: App, o: HealthOptions): void {
  const timeoutMs = o.timeoutMs ?? 1000;
  app.get("/health", { schema: { hide: true } }, async () => ({ status: "ok" }));
  app.get("/ready", { schema: { hide: true } }, async (_req, reply) => {
    const names = Object.keys(o.checks);
    const infoNames = Object.keys(o.informational ?? {});
    const results = await Promise.all([
      ...names.map((n) => run(o.checks[n] as ReadinessCheck, timeoutMs)),
      ...infoNames.map((n) => run((o.informational ?? {})[n] as ReadinessCheck, timeoutMs)),
    ]);
    const checks = Object.fromEntries([...names, ...infoNames].map((n, i) => [n, results[i]]));
    const details = o.details
      ? {
          details: await Promise.resolve()
            .then(o.details)
            .catch(() => ({})),
        }
      : {};
    const accepting = o.accepting?.() ?? true;
    if (accepting && results.slice(0, names.length).every(Boolean)) return { status: "ready", checks, ...details };
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

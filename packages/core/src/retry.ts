/** A retry schedule: exponential backoff with full jitter, as data. */
export interface RetrySchedule {
  /** Cap of the first retry's delay, ms (default 500). */
  baseMs: number;
  /** Largest delay, ms (default 30000). */
  maxMs: number;
}

/**
 * The delay before the next attempt after attempt `attempt` (1-based) failed:
 * `random(0, min(maxMs, baseMs · 2^(attempt−1)))`, at least `baseMs / 2`.
 * Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "full jitter".
 */
export function backoffMs(attempt: number, s: RetrySchedule, random = Math.random): number {
  const cap = Math.min(s.maxMs, s.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(Math.floor(s.baseMs / 2), Math.floor(random() * cap));
}

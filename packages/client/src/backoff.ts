/**
 * Retry timing, written once for HTTP calls and the stream.
 *
 * Source: Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog (2015):
 * "Full Jitter" — `sleep = random_between(0, min(cap, base * 2 ** attempt))` — spreads the
 * retries of many clients that failed at the same moment (a restart, a NATS hiccup) instead of
 * letting them return in synchronised waves, and does the least total work of the variants
 * measured there.
 *
 * @module
 */

/** A source of uniform random numbers in [0, 1); `Math.random` by default, fixed in tests. */
export type RandomSource = () => number;

/**
 * Full-jitter exponential backoff (AWS "Exponential Backoff And Jitter").
 *
 * @param retry 1 for the first retry, 2 for the second, …
 * @param baseMs the scale of the first retry's range, in milliseconds.
 * @param capMs the upper bound of any range, in milliseconds.
 * @param random uniform source in [0, 1).
 * @returns a delay in whole milliseconds in `[0, min(capMs, baseMs * 2 ** (retry - 1))]`.
 */
export function fullJitterMs(retry: number, baseMs: number, capMs: number, random: RandomSource = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(random() * ceiling);
}

/**
 * The stream's reconnection delay: the server's `retry:` hint is the floor (WHATWG HTML
 * "Server-sent events": the reconnection time a server asks for), and full jitter over an
 * exponential range is added above it so that thousands of consoles dropped by one stream
 * instance restart do not reconnect in the same millisecond.
 *
 * @param failure consecutive failures so far (1 = the first reconnect after a healthy connection).
 * @param hintMs the server's `retry:` value (or the client's default before one arrived).
 * @param capMs upper bound of the delay.
 * @returns a delay in `[min(hintMs, capMs), min(capMs, hintMs * 2 ** failure)]` milliseconds.
 */
export function reconnectDelayMs(
  failure: number,
  hintMs: number,
  capMs: number,
  random: RandomSource = Math.random,
): number {
  const floor = Math.min(hintMs, capMs);
  const ceiling = Math.min(capMs, hintMs * 2 ** Math.max(1, failure));
  return Math.round(floor + random() * Math.max(0, ceiling - floor));
}

/**
 * Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
 * @param now the current time in ms since the epoch (for the HTTP-date form).
 * @returns milliseconds to wait (≥ 0), or `undefined` when absent or unparseable.
 */
export function parseRetryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * Waits `ms` milliseconds, or rejects with the signal's reason as soon as `signal` aborts.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Latency summaries by sorting every sample (no histogram, no bucketing error): a phase has at
 * most a few tens of thousands of samples, which sort in milliseconds. Percentiles use the
 * nearest-rank method: pXX is the smallest sample such that at least XX % of the samples are at
 * or below it. A lost command counts as an infinitely slow sample, so a phase that loses more
 * than 1 % of its commands has an infinite p99 rather than a flattering one.
 */

/** A latency summary, milliseconds; `Infinity` where lost samples reach the percentile. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of an ascending array; `q` in [0, 1]. NaN for an empty array. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/**
 * Summarises latency samples (milliseconds; `Infinity` for a lost one).
 * @returns count, p50, p99, max and the mean of the finite samples.
 */
export function summarise(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const finite = sorted.filter(Number.isFinite);
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
    mean: finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : Number.NaN,
  };
}

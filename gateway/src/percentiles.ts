// Latency percentiles, one definition for the whole package: the dashboard's per-second series and
// `para bench` report the same p50 for the same samples.

/**
 * The q-quantile (0 ≤ q ≤ 1) of an ascending array, interpolated linearly between the two nearest
 * ranks (numpy's default); null when empty.
 */
export function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = q * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export interface Summary {
  p50: number | null;
  p90: number | null;
  p99: number | null;
  mean: number | null;
  max: number | null;
}

const tenth = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);

/** p50, p90, p99, mean and max of unsorted values, rounded to 0.1. */
export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: tenth(percentile(sorted, 0.5)),
    p90: tenth(percentile(sorted, 0.9)),
    p99: tenth(percentile(sorted, 0.99)),
    mean: tenth(sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null),
    max: tenth(sorted.at(-1) ?? null),
  };
}

/** `percentile` rounded to 0.1, as the traffic series report it. */
export function percentileTenth(sorted: number[], q: number): number | null {
  return tenth(percentile(sorted, q));
}

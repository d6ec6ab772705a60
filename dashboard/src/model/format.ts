/** Shown wherever a value is unknown, such as a percentile with no requests behind it. */
export const NO_VALUE = '—';

// A fixed locale keeps the page (and its tests) identical on every operator's machine.
const integerFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const oneDecimalFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const twoDecimalFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export function formatCount(value: number): string {
  return integerFormat.format(value);
}

/** Per-second rates: one decimal while small, where the decimal carries information. */
export function formatRate(perSecond: number): string {
  return perSecond < 100 ? oneDecimalFormat.format(perSecond) : integerFormat.format(perSecond);
}

export function formatMilliseconds(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return NO_VALUE;
  if (ms >= 1_000) return `${twoDecimalFormat.format(ms / 1_000)} s`;
  return `${integerFormat.format(ms)} ms`;
}

export function formatPercent(fraction: number): string {
  return `${oneDecimalFormat.format(fraction * 100)}%`;
}

/** Quality scores are reported with one decimal, as in benchmarks/quality/results.md. */
export function formatScore(value: number): string {
  return oneDecimalFormat.format(value);
}

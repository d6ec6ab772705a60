import type { SeriesPoint } from '../api/overview';

/** The window the summary tiles average over. */
export const RATE_WINDOW_MS = 10_000;

/** Each series entry counts what finished in the second starting at its `t`. */
const SECOND_MS = 1_000;

/**
 * The completed seconds that ended within the window before `now`. The series' last
 * entry is the second still in progress; counting it would make the rate sag and
 * recover with every poll depending on how far into the second the gateway answered.
 */
export function pointsInWindow(series: readonly SeriesPoint[], now: number, windowMs = RATE_WINDOW_MS): SeriesPoint[] {
  return series.filter((point) => {
    const end = point.t + SECOND_MS;
    return end <= now && end > now - windowMs;
  });
}

/**
 * Mean per-second rate of `field` over the window. Divides by the window's length, not
 * by the number of entries found, so seconds the gateway left out count as idle rather
 * than inflating the rate.
 */
export function ratePerSecond(
  series: readonly SeriesPoint[],
  now: number,
  field: 'requests' | 'tokens',
  windowMs = RATE_WINDOW_MS,
): number {
  const total = pointsInWindow(series, now, windowMs).reduce((sum, point) => sum + point[field], 0);
  return total / (windowMs / SECOND_MS);
}

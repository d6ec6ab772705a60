import type { Overview, SeriesPoint } from '../api/overview';
import { formatCount, formatMilliseconds } from './format';

/** How far back the line charts reach; the gateway keeps this much history. */
export const HISTORY_SECONDS = 120;

export interface TrafficSeries {
  /** Each point's time relative to the overview's `now`, in seconds (≤ 0). */
  seconds: number[];
  requests: number[];
  tokens: number[];
}

export interface LatencySeries {
  seconds: number[];
  /** `null` for seconds without finished requests: drawn as a gap, not as zero. */
  p50: (number | null)[];
  p99: (number | null)[];
}

export function trafficSeries(overview: Overview): TrafficSeries {
  const points = chronological(overview.series);
  return {
    seconds: points.map((point) => secondsBefore(point, overview.now)),
    requests: points.map((point) => point.requests),
    tokens: points.map((point) => point.tokens),
  };
}

export function latencySeries(overview: Overview): LatencySeries {
  const points = chronological(overview.series);
  return {
    seconds: points.map((point) => secondsBefore(point, overview.now)),
    p50: points.map((point) => finiteOrNull(point.p50_ms)),
    p99: points.map((point) => finiteOrNull(point.p99_ms)),
  };
}

/** Text alternative for the traffic chart: what a reader of the canvas would see last. */
export function describeTraffic(series: TrafficSeries): string {
  const last = series.seconds.length - 1;
  if (last < 0) return 'Traffic: no data yet.';
  return (
    `Traffic over the last ${series.seconds.length} s; latest second: ` +
    `${formatCount(series.requests[last] ?? 0)} requests, ${formatCount(series.tokens[last] ?? 0)} tokens; ` +
    `peak ${formatCount(Math.max(...series.requests))} requests/s, ${formatCount(Math.max(...series.tokens))} tokens/s.`
  );
}

/** Text alternative for the latency chart, naming the latest second that had requests. */
export function describeLatency(series: LatencySeries): string {
  for (let i = series.seconds.length - 1; i >= 0; i -= 1) {
    const p50 = series.p50[i] ?? null;
    const p99 = series.p99[i] ?? null;
    if (p50 !== null || p99 !== null) {
      return `Latency per second; latest with requests: p50 ${formatMilliseconds(p50)}, p99 ${formatMilliseconds(p99)}.`;
    }
  }
  return 'Latency per second: no finished requests in the window.';
}

// The API lists oldest first; sorting anyway keeps a reordered reply from drawing zigzags.
function chronological(series: readonly SeriesPoint[]): SeriesPoint[] {
  return [...series].sort((a, b) => a.t - b.t);
}

function secondsBefore(point: SeriesPoint, now: number): number {
  return (point.t - now) / 1_000;
}

function finiteOrNull(value: number | null): number | null {
  return value !== null && Number.isFinite(value) ? value : null;
}

import type { Overview, SeriesPoint } from '../../src/api/overview';

export const NOW = 1_764_340_000_000;

/** An overview of an idle gateway with nothing configured; tests override what they look at. */
export function overviewWith(overrides: Partial<Overview> = {}): Overview {
  return {
    now: NOW,
    backbone: 'smollm2-135m',
    tenants: [],
    adapters: [],
    workers: [],
    series: [],
    latency_ms: { p50: null, p90: null, p99: null },
    quality: { metric: 'dev', rows: [] },
    ...overrides,
  };
}

/** A series entry `secondsAgo` whole seconds before NOW. */
export function point(secondsAgo: number, fields: Partial<Omit<SeriesPoint, 't'>> = {}): SeriesPoint {
  return { t: NOW - secondsAgo * 1_000, requests: 0, tokens: 0, p50_ms: null, p99_ms: null, ...fields };
}

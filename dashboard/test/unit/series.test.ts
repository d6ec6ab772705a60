import { describe, expect, it } from 'vitest';
import { describeLatency, describeTraffic, latencySeries, trafficSeries } from '../../src/model/series';
import { overviewWith, point } from './overviewBuilder';

describe('trafficSeries', () => {
  it('puts points in time order, in seconds before now', () => {
    const overview = overviewWith({
      series: [point(0, { requests: 3, tokens: 90 }), point(2, { requests: 1, tokens: 30 }), point(1, { requests: 2, tokens: 60 })],
    });
    expect(trafficSeries(overview)).toEqual({ seconds: [-2, -1, 0], requests: [1, 2, 3], tokens: [30, 60, 90] });
  });

  it('is empty for an empty series', () => {
    const series = trafficSeries(overviewWith());
    expect(series).toEqual({ seconds: [], requests: [], tokens: [] });
    expect(describeTraffic(series)).toBe('Traffic: no data yet.');
  });

  it('describes the latest second and the peak', () => {
    const overview = overviewWith({ series: [point(1, { requests: 9, tokens: 2_500 }), point(0, { requests: 4, tokens: 120 })] });
    expect(describeTraffic(trafficSeries(overview))).toBe(
      'Traffic over the last 2 s; latest second: 4 requests, 120 tokens; peak 9 requests/s, 2,500 tokens/s.',
    );
  });
});

describe('latencySeries', () => {
  it('keeps null percentiles as gaps instead of zeros', () => {
    const overview = overviewWith({
      series: [point(2, { p50_ms: 300, p99_ms: 900 }), point(1), point(0, { p50_ms: 310, p99_ms: Number.NaN })],
    });
    expect(latencySeries(overview)).toEqual({ seconds: [-2, -1, 0], p50: [300, null, 310], p99: [900, null, null] });
  });

  it('describes the latest second that had requests', () => {
    const overview = overviewWith({ series: [point(2, { p50_ms: 300, p99_ms: 1_200 }), point(1), point(0)] });
    expect(describeLatency(latencySeries(overview))).toBe('Latency per second; latest with requests: p50 300 ms, p99 1.20 s.');
  });

  it('says so when no second had requests', () => {
    expect(describeLatency(latencySeries(overviewWith({ series: [point(0)] })))).toBe(
      'Latency per second: no finished requests in the window.',
    );
  });
});

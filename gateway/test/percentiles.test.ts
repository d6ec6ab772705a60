import { describe, expect, it } from 'vitest';
import { percentile, summarize } from '../src/percentiles.js';
import { TrafficWindow } from '../src/traffic.js';

describe('percentiles', () => {
  it('interpolates between the two nearest ranks, as numpy does', () => {
    const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(ten, 0.5)).toBe(5.5);
    expect(percentile(ten, 0.9)).toBeCloseTo(9.1, 10);
    expect(percentile(ten, 0.99)).toBeCloseTo(9.91, 10);
    expect(percentile(ten, 0)).toBe(1);
    expect(percentile(ten, 1)).toBe(10);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNull();
  });

  it('summarizes unsorted values rounded to 0.1', () => {
    expect(summarize([10, 1, 4, 3, 2, 9, 8, 7, 6, 5])).toEqual({ p50: 5.5, p90: 9.1, p99: 9.9, mean: 5.5, max: 10 });
    expect(summarize([])).toEqual({ p50: null, p90: null, p99: null, mean: null, max: null });
  });

  it('gives the dashboard series and `para bench` the same p50 for the same samples', () => {
    const window = new TrafficWindow();
    const latencies = [12.5, 3, 40, 7.25, 19];
    for (const ms of latencies) window.record(1, ms);
    expect(window.latency().p50).toBe(summarize(latencies).p50);
    expect(window.latency().p99).toBe(summarize(latencies).p99);
  });
});

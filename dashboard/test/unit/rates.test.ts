import { describe, expect, it } from 'vitest';
import { pointsInWindow, ratePerSecond } from '../../src/model/rates';
import { NOW, point } from './overviewBuilder';

describe('pointsInWindow', () => {
  it('keeps the ten completed seconds before now and leaves out the one in progress', () => {
    const series = [point(11), point(10), point(1), point(0), point(-1)];
    expect(pointsInWindow(series, NOW).map((p) => (NOW - p.t) / 1_000)).toEqual([10, 1]);
  });

  it('works when now falls inside a second', () => {
    const now = NOW + 400; // 0.4 s into the second that started at NOW
    const series = [point(10), point(9), point(1), point(0)];
    expect(pointsInWindow(series, now).map((p) => (NOW - p.t) / 1_000)).toEqual([10, 9, 1]);
  });
});

describe('ratePerSecond', () => {
  it('averages over the last 10 s and ignores older seconds and the current one', () => {
    const series = [
      point(30, { requests: 1_000, tokens: 99_999 }), // long ago
      ...Array.from({ length: 10 }, (_, i) => point(10 - i, { requests: 3, tokens: 90 })),
      point(0, { requests: 500, tokens: 500 }), // still in progress
    ];
    expect(ratePerSecond(series, NOW, 'requests')).toBe(3);
    expect(ratePerSecond(series, NOW, 'tokens')).toBe(90);
  });

  it('counts seconds missing from the series as idle rather than averaging fewer seconds', () => {
    const series = [point(2, { requests: 20 }), point(1, { requests: 10 })];
    expect(ratePerSecond(series, NOW, 'requests')).toBe(3);
  });

  it('is zero for an empty series', () => {
    expect(ratePerSecond([], NOW, 'requests')).toBe(0);
  });

  it('follows a custom window length', () => {
    const series = Array.from({ length: 60 }, (_, i) => point(i, { requests: 2 }));
    expect(ratePerSecond(series, NOW, 'requests', 30_000)).toBe(2);
  });
});

import { describe, expect, it } from 'vitest';
import { formatCount, formatMilliseconds, formatPercent, formatRate, formatScore, NO_VALUE } from '../../src/model/format';

describe('formatting', () => {
  it('groups thousands in counts', () => {
    expect(formatCount(2_050)).toBe('2,050');
    expect(formatCount(0)).toBe('0');
  });

  it('keeps one decimal on small rates only', () => {
    expect(formatRate(0)).toBe('0.0');
    expect(formatRate(4.25)).toBe('4.3');
    expect(formatRate(99.9)).toBe('99.9');
    expect(formatRate(1_234.5)).toBe('1,235');
  });

  it('shows milliseconds below a second and seconds above', () => {
    expect(formatMilliseconds(305.4)).toBe('305 ms');
    expect(formatMilliseconds(1_520)).toBe('1.52 s');
  });

  it('shows a dash for an unknown latency', () => {
    expect(formatMilliseconds(null)).toBe(NO_VALUE);
    expect(formatMilliseconds(Number.NaN)).toBe(NO_VALUE);
  });

  it('formats shares and scores', () => {
    expect(formatPercent(0.6042)).toBe('60.4%');
    expect(formatScore(59)).toBe('59.0');
  });
});

import { describe, expect, it } from 'vitest';
import type { AdapterStats } from '../../src/api/overview';
import { adapterBars, describeAdapterBars } from '../../src/model/adapterBars';
import { overviewWith } from './overviewBuilder';

function adapter(id: string, requests: number): AdapterStats {
  return { id, owner: null, versions: 1, requests, completion_tokens: 0 };
}

describe('adapterBars', () => {
  it('ranks adapters by requests, breaking ties by id', () => {
    const overview = overviewWith({ adapters: [adapter('b', 5), adapter('c', 9), adapter('a', 5)] });
    expect(adapterBars(overview)).toEqual({ labels: ['c', 'a', 'b'], requests: [9, 5, 5], omitted: 0 });
  });

  it('keeps only the busiest and counts the rest', () => {
    const overview = overviewWith({ adapters: [adapter('a', 1), adapter('b', 2), adapter('c', 3)] });
    const bars = adapterBars(overview, 2);
    expect(bars).toEqual({ labels: ['c', 'b'], requests: [3, 2], omitted: 1 });
    expect(describeAdapterBars(bars)).toBe('Requests per adapter: c 3, b 2; 1 more not shown.');
  });

  it('has no bars without adapters', () => {
    const bars = adapterBars(overviewWith());
    expect(bars.labels).toEqual([]);
    expect(describeAdapterBars(bars)).toBe('Requests per adapter: no adapters.');
  });
});

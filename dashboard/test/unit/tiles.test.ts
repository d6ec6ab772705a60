import { describe, expect, it } from 'vitest';
import type { WorkerStats } from '../../src/api/overview';
import { summaryTiles, type Tile } from '../../src/model/tiles';
import { overviewWith, point } from './overviewBuilder';

function tile(tiles: Tile[], id: Tile['id']): Tile {
  const found = tiles.find((t) => t.id === id);
  if (found === undefined) throw new Error(`no tile ${id}`);
  return found;
}

function worker(healthy: boolean): WorkerStats {
  return { address: 'w', healthy, inflight: 0, running: 0, waiting: 0, free_slots: 16, adapters_loaded: 0 };
}

describe('summaryTiles', () => {
  it('shows rates over the last 10 s and the latency percentiles', () => {
    const overview = overviewWith({
      series: [point(11, { requests: 500, tokens: 500 }), point(3, { requests: 25, tokens: 1_200 }), point(1, { requests: 16, tokens: 300 })],
      latency_ms: { p50: 305, p90: 700.1, p99: 1_870.2 },
    });
    const tiles = summaryTiles(overview);
    expect(tiles.map((t) => t.id)).toEqual(['requests-rate', 'tokens-rate', 'latency-p50', 'latency-p99', 'workers']);
    expect(tile(tiles, 'requests-rate').value).toBe('4.1');
    expect(tile(tiles, 'tokens-rate').value).toBe('150');
    expect(tile(tiles, 'latency-p50').value).toBe('305 ms');
    expect(tile(tiles, 'latency-p99').value).toBe('1.87 s');
    expect(tile(tiles, 'latency-p99').detail).toBe('p90 700 ms');
  });

  it('shows a dash and says why when no request has finished', () => {
    const tiles = summaryTiles(overviewWith());
    expect(tile(tiles, 'requests-rate').value).toBe('0.0');
    expect(tile(tiles, 'latency-p50').value).toBe('—');
    expect(tile(tiles, 'latency-p99').value).toBe('—');
    expect(tile(tiles, 'latency-p99').detail).toBe('no finished requests');
  });

  it.each([
    { workers: [true, true], value: '2 / 2', tone: 'good', detail: 'all serving' },
    { workers: [true, false, false], value: '1 / 3', tone: 'warning', detail: '2 down' },
    { workers: [false], value: '0 / 1', tone: 'bad', detail: 'no worker can serve requests' },
    { workers: [], value: '0 / 0', tone: 'bad', detail: 'no workers configured' },
  ])('rates worker health $value as $tone', ({ workers, value, tone, detail }) => {
    const workersTile = tile(summaryTiles(overviewWith({ workers: workers.map(worker) })), 'workers');
    expect(workersTile).toMatchObject({ value, tone, detail });
  });
});

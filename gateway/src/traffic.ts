// Recent traffic for the dashboard: per-second counts and latencies of finished requests, last 120 seconds.
import { percentileTenth } from './percentiles.js';

const SECONDS = 120;

interface Second {
  t: number; // start of the second, ms since epoch
  requests: number;
  tokens: number;
  latencies: number[];
}

export interface SeriesPoint {
  t: number;
  requests: number;
  tokens: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

export class TrafficWindow {
  private readonly seconds = new Map<number, Second>();

  constructor(private readonly clock: () => number = Date.now) {}

  record(completionTokens: number, latencyMs: number): void {
    const t = Math.floor(this.clock() / 1000) * 1000;
    let s = this.seconds.get(t);
    if (!s) {
      s = { t, requests: 0, tokens: 0, latencies: [] };
      this.seconds.set(t, s);
      for (const key of this.seconds.keys()) if (key <= t - SECONDS * 1000) this.seconds.delete(key);
    }
    s.requests += 1;
    s.tokens += completionTokens;
    s.latencies.push(latencyMs);
  }

  /** One point per second, oldest first, the current second last; empty seconds have null percentiles. */
  series(): SeriesPoint[] {
    const now = Math.floor(this.clock() / 1000) * 1000;
    const points: SeriesPoint[] = [];
    for (let t = now - (SECONDS - 1) * 1000; t <= now; t += 1000) {
      const s = this.seconds.get(t);
      const sorted = s ? [...s.latencies].sort((a, b) => a - b) : [];
      points.push({ t, requests: s?.requests ?? 0, tokens: s?.tokens ?? 0, p50_ms: percentileTenth(sorted, 0.5), p99_ms: percentileTenth(sorted, 0.99) });
    }
    return points;
  }

  /** Latency percentiles over the whole window. */
  latency(): { p50: number | null; p90: number | null; p99: number | null } {
    const cutoff = Math.floor(this.clock() / 1000) * 1000 - (SECONDS - 1) * 1000;
    const all = [...this.seconds.values()].filter((s) => s.t >= cutoff).flatMap((s) => s.latencies).sort((a, b) => a - b);
    return { p50: percentileTenth(all, 0.5), p90: percentileTenth(all, 0.9), p99: percentileTenth(all, 0.99) };
  }
}

import type { Overview } from '../api/overview';
import { formatMilliseconds, formatRate } from './format';
import { RATE_WINDOW_MS, ratePerSecond } from './rates';

export type Tone = 'neutral' | 'good' | 'warning' | 'bad';

export interface Tile {
  /** Stable identifier, used as `data-tile` in the page. */
  id: 'requests-rate' | 'tokens-rate' | 'latency-p50' | 'latency-p99' | 'workers';
  label: string;
  value: string;
  detail: string;
  tone: Tone;
}

export function summaryTiles(overview: Overview): Tile[] {
  const windowSeconds = RATE_WINDOW_MS / 1_000;
  const requestsRate = ratePerSecond(overview.series, overview.now, 'requests');
  const tokensRate = ratePerSecond(overview.series, overview.now, 'tokens');
  const healthy = overview.workers.filter((worker) => worker.healthy).length;
  const total = overview.workers.length;

  return [
    {
      id: 'requests-rate',
      label: 'Requests / s',
      value: formatRate(requestsRate),
      detail: `mean over the last ${windowSeconds} s`,
      tone: 'neutral',
    },
    {
      id: 'tokens-rate',
      label: 'Tokens / s',
      value: formatRate(tokensRate),
      detail: `generated, last ${windowSeconds} s`,
      tone: 'neutral',
    },
    {
      id: 'latency-p50',
      label: 'Latency p50',
      value: formatMilliseconds(overview.latency_ms.p50),
      detail: overview.latency_ms.p50 === null ? 'no finished requests' : 'median request',
      tone: 'neutral',
    },
    {
      id: 'latency-p99',
      label: 'Latency p99',
      value: formatMilliseconds(overview.latency_ms.p99),
      detail: overview.latency_ms.p99 === null ? 'no finished requests' : `p90 ${formatMilliseconds(overview.latency_ms.p90)}`,
      tone: 'neutral',
    },
    {
      id: 'workers',
      label: 'Healthy workers',
      value: `${healthy} / ${total}`,
      detail: workersDetail(healthy, total),
      tone: workersTone(healthy, total),
    },
  ];
}

function workersTone(healthy: number, total: number): Tone {
  if (total === 0 || healthy === 0) return 'bad';
  return healthy === total ? 'good' : 'warning';
}

function workersDetail(healthy: number, total: number): string {
  if (total === 0) return 'no workers configured';
  if (healthy === 0) return 'no worker can serve requests';
  if (healthy === total) return 'all serving';
  return `${total - healthy} down`;
}

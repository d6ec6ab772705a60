import type { Overview } from '../api/overview';
import { formatCount } from './format';

/** More bars than this stop being readable at dashboard width. */
export const MAX_ADAPTER_BARS = 12;

export interface AdapterBars {
  labels: string[];
  requests: number[];
  /** Adapters left out because they are beyond the busiest MAX_ADAPTER_BARS. */
  omitted: number;
}

/** The busiest adapters by requests, busiest first; ties by id so bars do not shuffle. */
export function adapterBars(overview: Overview, limit = MAX_ADAPTER_BARS): AdapterBars {
  const ranked = [...overview.adapters].sort((a, b) => b.requests - a.requests || a.id.localeCompare(b.id));
  const shown = ranked.slice(0, limit);
  return {
    labels: shown.map((adapter) => adapter.id),
    requests: shown.map((adapter) => adapter.requests),
    omitted: ranked.length - shown.length,
  };
}

export function describeAdapterBars(bars: AdapterBars): string {
  if (bars.labels.length === 0) return 'Requests per adapter: no adapters.';
  const parts = bars.labels.map((label, i) => `${label} ${formatCount(bars.requests[i] ?? 0)}`);
  const more = bars.omitted > 0 ? `; ${bars.omitted} more not shown` : '';
  return `Requests per adapter: ${parts.join(', ')}${more}.`;
}

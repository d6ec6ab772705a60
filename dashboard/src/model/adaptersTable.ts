import type { Overview } from '../api/overview';
import { formatCount, formatPercent } from './format';
import { numberColumn, textColumn, type TableModel } from './table';

/** Shared adapters first, then by id, so a row keeps its place between polls. */
export function adaptersTable(overview: Overview): TableModel {
  const adapters = [...overview.adapters].sort(
    (a, b) => Number(a.owner !== null) - Number(b.owner !== null) || a.id.localeCompare(b.id),
  );
  const totalRequests = adapters.reduce((sum, adapter) => sum + adapter.requests, 0);
  return {
    columns: [
      textColumn('Adapter'),
      textColumn('Owner'),
      numberColumn('Versions'),
      numberColumn('Requests'),
      numberColumn('Share'),
      numberColumn('Completion tokens'),
    ],
    rows: adapters.map((adapter) => [
      { text: adapter.id },
      { text: adapter.owner ?? 'shared' },
      { text: formatCount(adapter.versions) },
      { text: formatCount(adapter.requests) },
      { text: totalRequests === 0 ? '—' : formatPercent(adapter.requests / totalRequests) },
      { text: formatCount(adapter.completion_tokens) },
    ]),
    emptyMessage: 'No adapters uploaded yet.',
  };
}

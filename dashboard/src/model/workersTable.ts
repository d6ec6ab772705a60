import type { Overview } from '../api/overview';
import { formatCount } from './format';
import { numberColumn, textColumn, type TableModel } from './table';

/** In the gateway's order, which is its configuration order. */
export function workersTable(overview: Overview): TableModel {
  return {
    columns: [
      textColumn('Address'),
      textColumn('Health'),
      numberColumn('In flight'),
      numberColumn('Running'),
      numberColumn('Waiting'),
      numberColumn('Free slots'),
      numberColumn('Adapters loaded'),
    ],
    rows: overview.workers.map((worker) => [
      { text: worker.address },
      worker.healthy ? { text: 'healthy', badge: 'good' } : { text: 'down', badge: 'bad' },
      { text: formatCount(worker.inflight) },
      { text: formatCount(worker.running) },
      { text: formatCount(worker.waiting) },
      { text: formatCount(worker.free_slots) },
      { text: formatCount(worker.adapters_loaded) },
    ]),
    emptyMessage: 'No workers configured: the gateway has no engine to send requests to.',
  };
}

import type { Overview, QualityRow } from '../api/overview';
import { formatScore } from './format';
import { textColumn, numberColumn, type Cell, type TableModel } from './table';

/**
 * Pivots `quality.rows` into one row per task and one column per method, the layout of
 * benchmarks/quality/results.md. Tasks and methods keep the order the gateway sends them
 * in, which is results.md's.
 */
export function qualityTable(overview: Overview): TableModel {
  const rows = overview.quality.rows;
  const tasks = firstAppearanceOrder(rows.map((row) => row.task));
  const methods = firstAppearanceOrder(rows.map((row) => row.method));
  const byCell = new Map(rows.map((row) => [cellKey(row.task, row.method), row]));

  return {
    columns: [textColumn('Task'), ...methods.map(numberColumn)],
    rows: tasks.map((task) => [
      { text: task },
      ...methods.map((method) => qualityCell(byCell.get(cellKey(task, method)))),
    ]),
    emptyMessage: 'No quality results yet: benchmarks/quality/results.json was not found or holds no finished runs.',
  };
}

/** "59.0" over "57.0–60.0 · 3 seeds"; a single seed has no range to show. */
export function qualityCell(row: QualityRow | undefined): Cell {
  if (row === undefined) return { text: '—' };
  const seeds = `${row.seeds} seed${row.seeds === 1 ? '' : 's'}`;
  if (row.seeds <= 1) return { text: formatScore(row.median), detail: seeds };
  return { text: formatScore(row.median), detail: `${formatScore(row.min)}–${formatScore(row.max)} · ${seeds}` };
}

function firstAppearanceOrder(values: string[]): string[] {
  return [...new Set(values)];
}

function cellKey(task: string, method: string): string {
  return JSON.stringify([task, method]);
}

export function qualityCaption(overview: Overview): string {
  return `${overview.quality.metric} split · median over seeds, with min–max and seed count below`;
}

import { describe, expect, it } from 'vitest';
import { qualityCaption, qualityCell, qualityTable } from '../../src/model/qualityTable';
import { overviewWith } from './overviewBuilder';

const row = (task: string, method: string, median: number, min = median, max = median, seeds = 1) => ({
  task,
  method,
  median,
  min,
  max,
  seeds,
});

describe('qualityTable', () => {
  it('pivots rows into tasks × methods in first-appearance order', () => {
    const model = qualityTable(
      overviewWith({
        quality: {
          metric: 'dev',
          rows: [row('copa', 'para', 59, 57, 60, 3), row('copa', 'lora', 59, 57, 61, 3), row('boolq', 'lora', 68, 67.8, 69.4, 3)],
        },
      }),
    );
    expect(model.columns.map((c) => c.label)).toEqual(['Task', 'para', 'lora']);
    expect(model.rows).toEqual([
      [{ text: 'copa' }, { text: '59.0', detail: '57.0–60.0 · 3 seeds' }, { text: '59.0', detail: '57.0–61.0 · 3 seeds' }],
      [{ text: 'boolq' }, { text: '—' }, { text: '68.0', detail: '67.8–69.4 · 3 seeds' }],
    ]);
  });

  it('shows no range for a single seed', () => {
    expect(qualityCell(row('copa', 'base', 39))).toEqual({ text: '39.0', detail: '1 seed' });
  });

  it('has no rows and an explanation when the study has no results', () => {
    const model = qualityTable(overviewWith());
    expect(model.rows).toEqual([]);
    expect(model.columns.map((c) => c.label)).toEqual(['Task']);
    expect(model.emptyMessage).toContain('No quality results yet');
  });

  it('names the metric in the caption', () => {
    expect(qualityCaption(overviewWith())).toMatch(/^dev split/);
  });
});

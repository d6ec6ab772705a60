import { describe, expect, it } from 'vitest';
import { adaptersTable } from '../../src/model/adaptersTable';
import type { TableModel } from '../../src/model/table';
import { tenantsTable } from '../../src/model/tenantsTable';
import { workersTable } from '../../src/model/workersTable';
import { overviewWith } from './overviewBuilder';

const texts = (model: TableModel) => model.rows.map((row) => row.map((cell) => cell.text));

describe('tenantsTable', () => {
  it('lists tenants by name with grouped counts', () => {
    const model = tenantsTable(
      overviewWith({
        tenants: [
          { name: 'zeta', adapters: 0, requests: 1, prompt_tokens: 10, completion_tokens: 5 },
          { name: 'acme', adapters: 2, requests: 41, prompt_tokens: 2_050, completion_tokens: 900 },
        ],
      }),
    );
    expect(model.columns.map((c) => c.label)).toEqual(['Tenant', 'Adapters', 'Requests', 'Prompt tokens', 'Completion tokens']);
    expect(model.columns.map((c) => c.numeric)).toEqual([false, true, true, true, true]);
    expect(texts(model)).toEqual([
      ['acme', '2', '41', '2,050', '900'],
      ['zeta', '0', '1', '10', '5'],
    ]);
  });

  it('has an empty-state message', () => {
    const model = tenantsTable(overviewWith());
    expect(model.rows).toEqual([]);
    expect(model.emptyMessage).toContain('No tenants');
  });
});

describe('adaptersTable', () => {
  it('puts shared adapters first and shows each one’s share of requests', () => {
    const model = adaptersTable(
      overviewWith({
        adapters: [
          { id: 'acme/support', owner: 'acme', versions: 2, requests: 30, completion_tokens: 700 },
          { id: 'copa', owner: null, versions: 1, requests: 10, completion_tokens: 300 },
        ],
      }),
    );
    expect(texts(model)).toEqual([
      ['copa', 'shared', '1', '10', '25.0%', '300'],
      ['acme/support', 'acme', '2', '30', '75.0%', '700'],
    ]);
  });

  it('shows no share before any request', () => {
    const model = adaptersTable(overviewWith({ adapters: [{ id: 'copa', owner: null, versions: 1, requests: 0, completion_tokens: 0 }] }));
    expect(texts(model)[0]?.[4]).toBe('—');
  });
});

describe('workersTable', () => {
  it('keeps the gateway’s order and badges health', () => {
    const model = workersTable(
      overviewWith({
        workers: [
          { address: '10.0.0.2:50051', healthy: false, inflight: 0, running: 0, waiting: 0, free_slots: 0, adapters_loaded: 0 },
          { address: '10.0.0.1:50051', healthy: true, inflight: 3, running: 3, waiting: 1, free_slots: 13, adapters_loaded: 4 },
        ],
      }),
    );
    expect(texts(model)).toEqual([
      ['10.0.0.2:50051', 'down', '0', '0', '0', '0', '0'],
      ['10.0.0.1:50051', 'healthy', '3', '3', '1', '13', '4'],
    ]);
    expect(model.rows.map((row) => row[1]?.badge)).toEqual(['bad', 'good']);
  });
});

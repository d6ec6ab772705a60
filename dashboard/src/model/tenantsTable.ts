import type { Overview } from '../api/overview';
import { formatCount } from './format';
import { numberColumn, textColumn, type TableModel } from './table';

/** Sorted by name: rows that jump around every 2 s are hard to read. */
export function tenantsTable(overview: Overview): TableModel {
  const tenants = [...overview.tenants].sort((a, b) => a.name.localeCompare(b.name));
  return {
    columns: [
      textColumn('Tenant'),
      numberColumn('Adapters'),
      numberColumn('Requests'),
      numberColumn('Prompt tokens'),
      numberColumn('Completion tokens'),
    ],
    rows: tenants.map((tenant) => [
      { text: tenant.name },
      { text: formatCount(tenant.adapters) },
      { text: formatCount(tenant.requests) },
      { text: formatCount(tenant.prompt_tokens) },
      { text: formatCount(tenant.completion_tokens) },
    ]),
    emptyMessage: 'No tenants yet. Create one with POST /admin/v1/tenants.',
  };
}

import type { Cell, TableModel } from '../model/table';
import { element } from './dom';

/** Redraws `table` from the model; replacing the sections whole keeps no stale rows. */
export function renderTable(table: HTMLTableElement, model: TableModel): void {
  const headRow = element(
    'tr',
    {},
    model.columns.map((column) =>
      element('th', { text: column.label, className: column.numeric ? 'numeric' : '', attributes: { scope: 'col' } }),
    ),
  );
  const body =
    model.rows.length === 0
      ? [element('tr', { className: 'empty' }, [
          element('td', { text: model.emptyMessage, attributes: { colspan: String(model.columns.length) } }),
        ])]
      : model.rows.map((row) =>
          element(
            'tr',
            {},
            row.map((cell, i) => renderCell(cell, model.columns[i]?.numeric ?? false)),
          ),
        );
  table.replaceChildren(element('thead', {}, [headRow]), element('tbody', {}, body));
}

function renderCell(cell: Cell, numeric: boolean): HTMLTableCellElement {
  const content: Node[] = [
    cell.badge === undefined
      ? document.createTextNode(cell.text)
      : element('span', { className: `badge badge-${cell.badge}`, text: cell.text }),
  ];
  if (cell.detail !== undefined) content.push(element('span', { className: 'cell-detail', text: cell.detail }));
  return element('td', { className: numeric ? 'numeric' : '' }, content);
}

/** A table as the page draws it: already formatted, so the drawing code makes no decisions. */
export interface TableModel {
  columns: Column[];
  rows: Cell[][];
  /** Shown in place of the rows when there are none. */
  emptyMessage: string;
}

export interface Column {
  label: string;
  /** Numbers are right-aligned in tabular figures so digits line up. */
  numeric: boolean;
}

export interface Cell {
  text: string;
  /** A second, quieter line (ranges, shares). */
  detail?: string;
  /** Drawn as a coloured badge. */
  badge?: 'good' | 'bad';
}

export function textColumn(label: string): Column {
  return { label, numeric: false };
}

export function numberColumn(label: string): Column {
  return { label, numeric: true };
}

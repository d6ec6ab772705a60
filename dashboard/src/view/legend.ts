import { element } from './dom';

export interface LegendEntry {
  label: string;
  color: string;
}

/** An HTML legend instead of Chart.js's canvas one: it wraps on narrow screens and can be read by screen readers. */
export function renderLegend(list: HTMLElement, entries: LegendEntry[]): void {
  list.replaceChildren(
    ...entries.map((entry) => {
      const swatch = element('span', { className: 'swatch', attributes: { 'aria-hidden': 'true' } });
      swatch.style.background = entry.color;
      return element('li', {}, [swatch, document.createTextNode(entry.label)]);
    }),
  );
}

import type { AdapterBars } from '../model/adapterBars';
import { formatCount } from '../model/format';
import { Chart } from './chartSetup';
import { palette } from './palette';

export interface AdapterChartView {
  update(bars: AdapterBars): void;
}

/** Horizontal bars, so adapter ids such as `acme/support@2` stay readable. */
export function createAdapterChart(canvas: HTMLCanvasElement): AdapterChartView {
  const chart = new Chart<'bar', number[], string>(canvas, {
    type: 'bar',
    data: {
      labels: [],
      datasets: [{ label: 'Requests', data: [], backgroundColor: palette.adapterBars, borderRadius: 3, maxBarThickness: 22 }],
    },
    options: {
      indexAxis: 'y',
      scales: {
        x: { type: 'linear', beginAtZero: true, ticks: { callback: (value) => formatCount(Number(value)), precision: 0 } },
        y: { type: 'category', grid: { display: false } },
      },
    },
  });
  return {
    update(bars) {
      chart.data.labels = bars.labels;
      const dataset = chart.data.datasets[0];
      if (dataset !== undefined) dataset.data = bars.requests;
      chart.update('none');
    },
  };
}

import type { ChartDataset } from 'chart.js';
import { HISTORY_SECONDS, type LatencySeries, type TrafficSeries } from '../model/series';
import { formatMilliseconds } from '../model/format';
import { Chart } from './chartSetup';
import { palette } from './palette';

/** A point on a time line; `y: null` is drawn as a gap. */
interface TimePoint {
  x: number;
  y: number | null;
}

type TimeChart = Chart<'line', TimePoint[]>;

export interface TimeChartView<Series> {
  update(series: Series): void;
}

export function createTrafficChart(canvas: HTMLCanvasElement): TimeChartView<TrafficSeries> {
  const chart: TimeChart = new Chart(canvas, {
    type: 'line',
    data: {
      datasets: [
        lineDataset('Requests / s', palette.requests, 'requests'),
        lineDataset('Tokens / s', palette.tokens, 'tokens'),
      ],
    },
    options: {
      ...timeChartOptions(),
      scales: {
        x: timeAxis(),
        requests: { type: 'linear', position: 'left', beginAtZero: true, title: { display: true, text: 'requests / s' } },
        tokens: {
          type: 'linear',
          position: 'right',
          beginAtZero: true,
          title: { display: true, text: 'tokens / s' },
          // One grid is enough; the right axis only labels the orange line.
          grid: { drawOnChartArea: false },
        },
      },
    },
  });
  return {
    update(series) {
      setPoints(chart, 0, series.seconds, series.requests);
      setPoints(chart, 1, series.seconds, series.tokens);
      chart.update('none');
    },
  };
}

export function createLatencyChart(canvas: HTMLCanvasElement): TimeChartView<LatencySeries> {
  const chart: TimeChart = new Chart(canvas, {
    type: 'line',
    data: {
      datasets: [lineDataset('p50', palette.p50, 'ms'), lineDataset('p99', palette.p99, 'ms')],
    },
    options: {
      ...timeChartOptions(),
      scales: {
        x: timeAxis(),
        ms: {
          type: 'linear',
          position: 'left',
          beginAtZero: true,
          ticks: { callback: (value) => formatMilliseconds(Number(value)) },
        },
      },
    },
  });
  return {
    update(series) {
      setPoints(chart, 0, series.seconds, series.p50);
      setPoints(chart, 1, series.seconds, series.p99);
      chart.update('none');
    },
  };
}

function lineDataset(label: string, color: string, yAxisID: string): ChartDataset<'line', TimePoint[]> {
  return {
    label,
    data: [],
    yAxisID,
    borderColor: color,
    backgroundColor: color,
    borderWidth: 2,
    pointRadius: 0,
    pointHoverRadius: 3,
    // Seconds without requests have no percentile: leave a gap rather than invent a value.
    spanGaps: false,
  };
}

function timeChartOptions() {
  return {
    interaction: { mode: 'index' as const, intersect: false },
    plugins: {
      tooltip: {
        callbacks: {
          title: (items: { parsed: { x: number | null } }[]) => `${Math.round(-(items[0]?.parsed.x ?? 0))} s ago`,
        },
      },
    },
  };
}

function timeAxis() {
  return {
    type: 'linear' as const,
    min: -HISTORY_SECONDS,
    max: 0,
    ticks: { stepSize: 20, callback: (value: string | number) => (Number(value) === 0 ? 'now' : `${value} s`) },
  };
}

function setPoints(chart: TimeChart, index: number, seconds: number[], values: (number | null)[]): void {
  const dataset = chart.data.datasets[index];
  if (dataset === undefined) return;
  dataset.data = seconds.map((x, i) => ({ x, y: values[i] ?? null }));
}

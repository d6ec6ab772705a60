import type { Overview } from '../api/overview';
import { adapterBars, describeAdapterBars } from '../model/adapterBars';
import { adaptersTable } from '../model/adaptersTable';
import { qualityCaption, qualityTable } from '../model/qualityTable';
import { describeLatency, describeTraffic, latencySeries, trafficSeries } from '../model/series';
import { tenantsTable } from '../model/tenantsTable';
import { summaryTiles } from '../model/tiles';
import { workersTable } from '../model/workersTable';
import { createAdapterChart } from './adapterChart';
import { requireElement } from './dom';
import { renderLegend } from './legend';
import { palette } from './palette';
import { renderTable } from './tableView';
import { renderTiles } from './tilesView';
import { createLatencyChart, createTrafficChart } from './timeCharts';

export interface DashboardView {
  show(): void;
  hide(): void;
  render(overview: Overview): void;
  /** Dims the figures while they are older than the last failed poll. */
  markStale(stale: boolean): void;
}

export function createDashboardView(): DashboardView {
  const root = requireElement('dashboard', HTMLDivElement);
  const backbone = requireElement('backbone', HTMLElement);
  // In the header, outside the dashboard section, but shown and hidden with it.
  const backboneLabel = requireElement('backbone-label', HTMLElement);
  const tiles = requireElement('tiles', HTMLElement);
  const trafficCanvas = requireElement('traffic-chart', HTMLCanvasElement);
  const latencyCanvas = requireElement('latency-chart', HTMLCanvasElement);
  const adapterCanvas = requireElement('adapter-chart', HTMLCanvasElement);
  const adapterNote = requireElement('adapter-chart-note', HTMLElement);
  const tables = {
    tenants: requireElement('tenants-table', HTMLTableElement),
    adapters: requireElement('adapters-table', HTMLTableElement),
    workers: requireElement('workers-table', HTMLTableElement),
    quality: requireElement('quality-table', HTMLTableElement),
  };
  const qualityCaptionText = requireElement('quality-caption', HTMLElement);

  renderLegend(requireElement('traffic-legend', HTMLUListElement), [
    { label: 'Requests / s', color: palette.requests },
    { label: 'Tokens / s', color: palette.tokens },
  ]);
  renderLegend(requireElement('latency-legend', HTMLUListElement), [
    { label: 'p50', color: palette.p50 },
    { label: 'p99', color: palette.p99 },
  ]);

  // Charts are created on first render: Chart.js measures its container, which is
  // hidden (zero-sized) until then.
  let charts: ReturnType<typeof createCharts> | null = null;
  function createCharts() {
    return {
      traffic: createTrafficChart(trafficCanvas),
      latency: createLatencyChart(latencyCanvas),
      adapters: createAdapterChart(adapterCanvas),
    };
  }

  return {
    show() {
      root.hidden = false;
      backboneLabel.hidden = false;
    },
    hide() {
      root.hidden = true;
      backboneLabel.hidden = true;
    },
    render(overview) {
      backbone.textContent = overview.backbone;
      renderTiles(tiles, summaryTiles(overview));

      charts ??= createCharts();
      const traffic = trafficSeries(overview);
      const latency = latencySeries(overview);
      const bars = adapterBars(overview);
      charts.traffic.update(traffic);
      charts.latency.update(latency);
      charts.adapters.update(bars);
      trafficCanvas.setAttribute('aria-label', describeTraffic(traffic));
      latencyCanvas.setAttribute('aria-label', describeLatency(latency));
      adapterCanvas.setAttribute('aria-label', describeAdapterBars(bars));
      adapterNote.textContent = bars.omitted > 0 ? `busiest ${bars.labels.length} of ${bars.labels.length + bars.omitted}` : '';

      renderTable(tables.workers, workersTable(overview));
      renderTable(tables.tenants, tenantsTable(overview));
      renderTable(tables.adapters, adaptersTable(overview));
      renderTable(tables.quality, qualityTable(overview));
      qualityCaptionText.textContent = qualityCaption(overview);
    },
    markStale(stale) {
      root.classList.toggle('stale', stale);
    },
  };
}

// Everything recorded when an inference request ends: usage in the database, the tenant's token window,
// Prometheus counters and histograms, and the dashboard's traffic series.
import type { UsageStore } from './db/usage.js';
import type { RateLimiter } from './limits.js';
import type { GatewayMetrics } from './metrics.js';
import type { TrafficWindow } from './traffic.js';

export interface RequestRecord {
  tenant: string; // '' for the operator
  model: string; // id without version
  status: number;
  promptTokens: number;
  completionTokens: number;
  startedAt: number; // performance.now() at admission
}

export class Accounting {
  constructor(
    private readonly usage: UsageStore,
    private readonly limiter: RateLimiter,
    private readonly metrics: GatewayMetrics,
    private readonly traffic: TrafficWindow,
  ) {}

  firstToken(startedAt: number): void {
    this.metrics.timeToFirstToken.observe((performance.now() - startedAt) / 1000);
  }

  finish(record: RequestRecord): void {
    const elapsedMs = performance.now() - record.startedAt;
    const tenantLabel = record.tenant || 'operator';
    this.metrics.requests.inc({ tenant: tenantLabel, model: record.model, status: String(record.status) });
    if (record.promptTokens + record.completionTokens > 0) {
      this.usage.record(record.tenant, record.model, record.promptTokens, record.completionTokens);
      this.metrics.tokens.inc({ tenant: tenantLabel, model: record.model, kind: 'prompt' }, record.promptTokens);
      this.metrics.tokens.inc({ tenant: tenantLabel, model: record.model, kind: 'completion' }, record.completionTokens);
      if (record.tenant) this.limiter.recordTokens(record.tenant, record.promptTokens + record.completionTokens);
    }
    if (record.status === 200) {
      this.metrics.duration.observe(elapsedMs / 1000);
      this.traffic.record(record.completionTokens, elapsedMs);
    }
  }
}

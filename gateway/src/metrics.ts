// Prometheus metrics, in a registry of this gateway's own (several gateways can share one process in tests).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkerPool } from './workers/pool.js';

export class GatewayMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'para_requests_total',
    help: 'Inference requests by tenant, model and HTTP status',
    labelNames: ['tenant', 'model', 'status'] as const,
    registers: [this.registry],
  });

  readonly tokens = new Counter({
    name: 'para_tokens_total',
    help: 'Tokens by tenant, model and kind (prompt or completion)',
    labelNames: ['tenant', 'model', 'kind'] as const,
    registers: [this.registry],
  });

  readonly duration = new Histogram({
    name: 'para_request_duration_seconds',
    help: 'Inference request duration, from admission to the last token',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly timeToFirstToken = new Histogram({
    name: 'para_time_to_first_token_seconds',
    help: 'Time from admission to the first token from the engine',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly inflight = new Gauge({
    name: 'para_inflight_requests',
    help: 'Engine requests in flight through this gateway',
    registers: [this.registry],
  });

  /**
   * Drops the series of a deleted tenant (by its name, as labelled) or of an adapter with no version left (by its
   * id), so that /metrics does not grow with every tenant and adapter name ever served.
   */
  async forget(match: { tenant?: string; model?: string }): Promise<void> {
    for (const metric of [this.requests, this.tokens] as Counter<string>[]) {
      for (const { labels } of (await metric.get()).values) {
        if ((match.tenant === undefined || labels.tenant === match.tenant) && (match.model === undefined || labels.model === match.model)) {
          metric.remove(labels as Record<string, string>);
        }
      }
    }
  }

  constructor(pool: WorkerPool) {
    new Gauge({
      name: 'para_worker_up',
      help: '1 while the engine worker passes health checks',
      labelNames: ['worker'] as const,
      registers: [this.registry],
      collect() {
        for (const w of pool.workers) this.set({ worker: w.address }, w.healthy ? 1 : 0);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }
}

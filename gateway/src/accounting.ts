// Everything recorded when an inference request ends, however it ends: usage in the database (by tenant id),
// the settlement of its rate-limit reservation, Prometheus counters and histograms, and the dashboard's
// traffic series.
import type { UsageStore } from './db/usage.js';
import type { GatewayMetrics } from './metrics.js';
import type { RequestContext } from './routes/openai/execute.js';
import type { TrafficWindow } from './traffic.js';

export interface RequestOutcome {
  status: number;
  promptTokens: number;
  completionTokens: number;
}

export class Accounting {
  constructor(
    private readonly usage: UsageStore,
    private readonly metrics: GatewayMetrics,
    private readonly traffic: TrafficWindow,
  ) {}

  firstToken(startedAt: number): void {
    this.metrics.timeToFirstToken.observe((performance.now() - startedAt) / 1000);
  }

  /** Resolves once the usage row and the limits are written, so a reply sent after it is already counted. */
  async finish(ctx: RequestContext, outcome: RequestOutcome): Promise<void> {
    const elapsedMs = performance.now() - ctx.startedAt;
    const tenantLabel = ctx.tenant || 'operator';
    const tokens = outcome.promptTokens + outcome.completionTokens;
    this.metrics.requests.inc({ tenant: tenantLabel, model: ctx.modelId, status: String(outcome.status) });
    // The gateway's own failures do not count against the tenant's limits; what the engine generated is still billed.
    const settled = outcome.status >= 500 ? ctx.admission.refund() : ctx.admission.settle(tokens);
    const recorded = tokens > 0 ? this.usage.record(ctx.tenantId, ctx.modelId, 1, outcome.promptTokens, outcome.completionTokens, ctx.endUser) : undefined;
    if (tokens > 0) {
      this.metrics.tokens.inc({ tenant: tenantLabel, model: ctx.modelId, kind: 'prompt' }, outcome.promptTokens);
      this.metrics.tokens.inc({ tenant: tenantLabel, model: ctx.modelId, kind: 'completion' }, outcome.completionTokens);
    }
    if (outcome.status === 200) {
      this.metrics.duration.observe(elapsedMs / 1000);
      this.traffic.record(outcome.completionTokens, elapsedMs);
    }
    await Promise.all([settled, recorded]);
  }
}

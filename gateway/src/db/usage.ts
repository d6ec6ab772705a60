// Token usage per (tenant id, model), added to when every request ends. Keyed by the tenant's id, never its
// name: names can be reused after a delete, ids cannot (tenants.id is AUTOINCREMENT).
import type { Db } from './database.js';

/** The id usage of the operator's own requests is recorded under. */
export const OPERATOR_ID = 0;

export interface UsageRow {
  tenant: string;
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export class UsageStore {
  private readonly add;

  constructor(private readonly db: Db) {
    this.add = db.prepare(`
      INSERT INTO tenant_usage (tenant_id, model, requests, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(tenant_id, model) DO UPDATE SET requests = requests + excluded.requests,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens`);
  }

  /**
   * Adds one request's usage, if its tenant still exists (the operator always does): a stream that ends after
   * its tenant was deleted is not recorded.
   */
  record(tenantId: number, model: string, requests: number, promptTokens: number, completionTokens: number): void {
    this.db.transaction(() => {
      if (tenantId !== OPERATOR_ID && !this.db.prepare('SELECT 1 FROM tenants WHERE id = ?').get(tenantId)) return;
      this.add.run(tenantId, model, requests, promptTokens, completionTokens);
    })();
  }

  /** Totals per tenant, by name (the operator's own traffic is left out). */
  byTenant(): Omit<UsageRow, 'model'>[] {
    return this.db
      .prepare(`SELECT t.name AS tenant, SUM(u.requests) AS requests, SUM(u.prompt_tokens) AS prompt_tokens,
                SUM(u.completion_tokens) AS completion_tokens FROM tenant_usage u JOIN tenants t ON t.id = u.tenant_id
                GROUP BY t.id ORDER BY t.name`)
      .all() as Omit<UsageRow, 'model'>[];
  }

  /** Totals per model id, every caller included. */
  byModel(): Omit<UsageRow, 'tenant'>[] {
    return this.db
      .prepare(`SELECT model, SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
                SUM(completion_tokens) AS completion_tokens FROM tenant_usage GROUP BY model ORDER BY model`)
      .all() as Omit<UsageRow, 'tenant'>[];
  }

  forgetTenant(tenantId: number): void {
    this.db.prepare('DELETE FROM tenant_usage WHERE tenant_id = ?').run(tenantId);
  }
}

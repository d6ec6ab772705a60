// Token usage per (tenant, model), added to after every finished request.
import type { Db } from './database.js';

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
      INSERT INTO usage (tenant, model, requests, prompt_tokens, completion_tokens) VALUES (?, ?, 1, ?, ?)
      ON CONFLICT(tenant, model) DO UPDATE SET requests = requests + 1,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens`);
  }

  record(tenant: string, model: string, promptTokens: number, completionTokens: number): void {
    this.add.run(tenant, model, promptTokens, completionTokens);
  }

  /** Totals per tenant (the operator's own traffic, tenant '', is left out). */
  byTenant(): Omit<UsageRow, 'model'>[] {
    return this.db
      .prepare(`SELECT tenant, SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
                SUM(completion_tokens) AS completion_tokens FROM usage WHERE tenant != '' GROUP BY tenant ORDER BY tenant`)
      .all() as Omit<UsageRow, 'model'>[];
  }

  /** Totals per model id, every caller included. */
  byModel(): Omit<UsageRow, 'tenant'>[] {
    return this.db
      .prepare(`SELECT model, SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
                SUM(completion_tokens) AS completion_tokens FROM usage GROUP BY model ORDER BY model`)
      .all() as Omit<UsageRow, 'tenant'>[];
  }

  forgetTenant(tenant: string): void {
    this.db.prepare('DELETE FROM usage WHERE tenant = ?').run(tenant);
  }
}

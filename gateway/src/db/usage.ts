// Token usage per (tenant id, model), added to when every request ends. Keyed by the tenant's id, never its
// name: names can be reused after a delete, ids cannot. Each request's usage is one upsert that adds to the
// row, so replicas writing at once never lose an update (no read-modify-write in the gateway).
import { sql } from 'kysely';
import type { Db } from './schema.js';

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
  constructor(private readonly db: Db) {}

  /**
   * Adds one request's usage, if its tenant still exists (the operator always does): a stream that ends after
   * its tenant was deleted is not recorded. The existence check is part of the same statement (PostgreSQL needs
   * the parameters' types spelled out in an INSERT … SELECT, hence the casts).
   */
  async record(tenantId: number, model: string, requests: number, promptTokens: number, completionTokens: number): Promise<void> {
    await this.db
      .insertInto('tenant_usage')
      .columns(['tenant_id', 'model', 'requests', 'prompt_tokens', 'completion_tokens'])
      .expression(
        this.db
          .selectNoFrom([
            sql<number>`CAST(${tenantId} AS BIGINT)`.as('tenant_id'),
            sql<string>`CAST(${model} AS TEXT)`.as('model'),
            sql<number>`CAST(${requests} AS BIGINT)`.as('requests'),
            sql<number>`CAST(${promptTokens} AS BIGINT)`.as('prompt_tokens'),
            sql<number>`CAST(${completionTokens} AS BIGINT)`.as('completion_tokens'),
          ])
          .where((w) => (tenantId === OPERATOR_ID ? sql<boolean>`1 = 1` : w.exists(this.db.selectFrom('tenants').select('id').where('id', '=', tenantId)))),
      )
      .onConflict((oc) =>
        oc.columns(['tenant_id', 'model']).doUpdateSet((eb) => ({
          requests: eb('tenant_usage.requests', '+', eb.ref('excluded.requests')),
          prompt_tokens: eb('tenant_usage.prompt_tokens', '+', eb.ref('excluded.prompt_tokens')),
          completion_tokens: eb('tenant_usage.completion_tokens', '+', eb.ref('excluded.completion_tokens')),
        })),
      )
      .execute();
  }

  /** Totals per tenant, by name (the operator's own traffic is left out). */
  async byTenant(): Promise<Omit<UsageRow, 'model'>[]> {
    const rows = await this.db
      .selectFrom('tenant_usage as u')
      .innerJoin('tenants as t', 't.id', 'u.tenant_id')
      .select((eb) => [
        't.name as tenant',
        eb.fn.sum<number>('u.requests').as('requests'),
        eb.fn.sum<number>('u.prompt_tokens').as('prompt_tokens'),
        eb.fn.sum<number>('u.completion_tokens').as('completion_tokens'),
      ])
      .groupBy(['t.id', 't.name'])
      .orderBy('t.name')
      .execute();
    return rows.map((r) => ({ tenant: r.tenant, requests: Number(r.requests), prompt_tokens: Number(r.prompt_tokens), completion_tokens: Number(r.completion_tokens) }));
  }

  /** Totals per model id, every caller included. */
  async byModel(): Promise<Omit<UsageRow, 'tenant'>[]> {
    const rows = await this.db
      .selectFrom('tenant_usage')
      .select((eb) => [
        'model',
        eb.fn.sum<number>('requests').as('requests'),
        eb.fn.sum<number>('prompt_tokens').as('prompt_tokens'),
        eb.fn.sum<number>('completion_tokens').as('completion_tokens'),
      ])
      .groupBy('model')
      .orderBy('model')
      .execute();
    return rows.map((r) => ({ model: r.model, requests: Number(r.requests), prompt_tokens: Number(r.prompt_tokens), completion_tokens: Number(r.completion_tokens) }));
  }

  async forgetTenant(tenantId: number): Promise<void> {
    await this.db.deleteFrom('tenant_usage').where('tenant_id', '=', tenantId).execute();
  }
}

// Token usage per (tenant id, model), added to when every request ends. Keyed by the tenant's id, never its
// name: names can be reused after a delete, ids cannot. Each request's usage is one upsert that adds to the
// row, so replicas writing at once never lose an update (no read-modify-write in the gateway).
import { type ExpressionBuilder, sql } from 'kysely';
import type { Db, Tables } from './schema.js';

/** An upsert's update: the row's counts plus the ones being inserted (no read-modify-write in the gateway). */
const adding = (table: 'tenant_usage' | 'user_usage') => (eb: ExpressionBuilder<any, any>) => ({
  requests: eb(`${table}.requests`, '+', eb.ref('excluded.requests')),
  prompt_tokens: eb(`${table}.prompt_tokens`, '+', eb.ref('excluded.prompt_tokens')),
  completion_tokens: eb(`${table}.completion_tokens`, '+', eb.ref('excluded.completion_tokens')),
});

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
  /** `lockTenants`: PostgreSQL, where a record's check of its tenant locks the tenant's row (see record). */
  constructor(
    private readonly db: Db,
    private readonly lockTenants = false,
  ) {}

  /**
   * Adds one request's usage, if its tenant still exists (the operator always does): a stream that ends after
   * its tenant was deleted is not recorded. The existence check is part of the same statement (PostgreSQL needs
   * the parameters' types spelled out in an INSERT … SELECT, hence the casts). A request that named its end
   * user (OpenAI's `user`) is added to that user's row as well.
   */
  async record(tenantId: number, model: string, requests: number, promptTokens: number, completionTokens: number, endUser?: string): Promise<void> {
    const counts = [
      sql<number>`CAST(${requests} AS BIGINT)`.as('requests'),
      sql<number>`CAST(${promptTokens} AS BIGINT)`.as('prompt_tokens'),
      sql<number>`CAST(${completionTokens} AS BIGINT)`.as('completion_tokens'),
    ];
    const key = [sql<number>`CAST(${tenantId} AS BIGINT)`.as('tenant_id'), sql<string>`CAST(${model} AS TEXT)`.as('model')];
    // Only for a tenant that still exists; on PostgreSQL the check locks its row, so a deletion not yet committed
    // either waits for this write (and then removes it with the tenant's usage) or wins (nothing is written).
    const tenant = this.db.selectFrom('tenants').select('id').where('id', '=', tenantId);
    const exists = (w: ExpressionBuilder<Tables, never>) =>
      tenantId === OPERATOR_ID ? sql<boolean>`1 = 1` : w.exists(this.lockTenants ? tenant.forKeyShare() : tenant);
    await this.db
      .insertInto('tenant_usage')
      .columns(['tenant_id', 'model', 'requests', 'prompt_tokens', 'completion_tokens'])
      .expression(this.db.selectNoFrom([...key, ...counts]).where(exists))
      .onConflict((oc) => oc.columns(['tenant_id', 'model']).doUpdateSet(adding('tenant_usage')))
      .execute();
    if (!endUser) return;
    await this.db
      .insertInto('user_usage')
      .columns(['tenant_id', 'model', 'end_user', 'requests', 'prompt_tokens', 'completion_tokens'])
      .expression(this.db.selectNoFrom([...key, sql<string>`CAST(${endUser} AS TEXT)`.as('end_user'), ...counts]).where(exists))
      .onConflict((oc) => oc.columns(['tenant_id', 'model', 'end_user']).doUpdateSet(adding('user_usage')))
      .execute();
  }

  /** Totals per (tenant, model, end user) of the requests that named their user, by tenant name. */
  async byUser(): Promise<(UsageRow & { user: string })[]> {
    const rows = await this.db
      .selectFrom('user_usage as u')
      .leftJoin('tenants as t', 't.id', 'u.tenant_id')
      .select(['t.name as tenant', 'u.model', 'u.end_user', 'u.requests', 'u.prompt_tokens', 'u.completion_tokens'])
      .orderBy('t.name')
      .orderBy('u.model')
      .orderBy('u.end_user')
      .execute();
    return rows.map((r) => ({ tenant: r.tenant ?? '', model: r.model, user: r.end_user, requests: Number(r.requests), prompt_tokens: Number(r.prompt_tokens), completion_tokens: Number(r.completion_tokens) }));
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
    await this.db.deleteFrom('user_usage').where('tenant_id', '=', tenantId).execute();
  }
}

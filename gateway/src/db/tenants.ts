// Tenants: a name, and their requests- and tokens-per-minute limits.
import type { Db } from './schema.js';
import { nowSeconds } from './time.js';

export interface Tenant {
  id: number;
  name: string;
  rpm: number;
  tpm: number;
  created: number;
}

const COLUMNS = ['id', 'name', 'rpm', 'tpm', 'created'] as const;

export class TenantStore {
  constructor(private readonly db: Db) {}

  /** The new tenant, or undefined when the name is taken. */
  async create(name: string, rpm: number, tpm: number): Promise<Tenant | undefined> {
    return this.db
      .insertInto('tenants')
      .values({ name, rpm, tpm, created: nowSeconds() })
      .onConflict((oc) => oc.column('name').doNothing())
      .returning(COLUMNS)
      .executeTakeFirst();
  }

  async update(name: string, limits: { rpm?: number; tpm?: number }): Promise<Tenant | undefined> {
    const set: { rpm?: number; tpm?: number } = {};
    if (limits.rpm !== undefined) set.rpm = limits.rpm;
    if (limits.tpm !== undefined) set.tpm = limits.tpm;
    if (Object.keys(set).length === 0) return this.byName(name);
    return this.db.updateTable('tenants').set(set).where('name', '=', name).returning(COLUMNS).executeTakeFirst();
  }

  async byName(name: string): Promise<Tenant | undefined> {
    return this.db.selectFrom('tenants').select(COLUMNS).where('name', '=', name).executeTakeFirst();
  }

  async byId(id: number): Promise<Tenant | undefined> {
    return this.db.selectFrom('tenants').select(COLUMNS).where('id', '=', id).executeTakeFirst();
  }

  async list(): Promise<Tenant[]> {
    return this.db.selectFrom('tenants').select(COLUMNS).orderBy('name').execute();
  }

  /** Removes this tenant (not another of the same name) and (by cascade) its keys. */
  async deleteById(id: number): Promise<boolean> {
    const result = await this.db.deleteFrom('tenants').where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}

// Tenants: a name, and their requests- and tokens-per-minute limits.
import type { Db } from './database.js';
import { nowSeconds } from './database.js';

export interface Tenant {
  id: number;
  name: string;
  rpm: number;
  tpm: number;
  created: number;
}

export class TenantStore {
  constructor(private readonly db: Db) {}

  create(name: string, rpm: number, tpm: number): Tenant | undefined {
    const created = nowSeconds();
    const result = this.db
      .prepare('INSERT INTO tenants (name, rpm, tpm, created) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING')
      .run(name, rpm, tpm, created);
    if (result.changes === 0) return undefined;
    return { id: Number(result.lastInsertRowid), name, rpm, tpm, created };
  }

  update(name: string, limits: { rpm?: number; tpm?: number }): Tenant | undefined {
    const tenant = this.byName(name);
    if (!tenant) return undefined;
    const next = { ...tenant, rpm: limits.rpm ?? tenant.rpm, tpm: limits.tpm ?? tenant.tpm };
    this.db.prepare('UPDATE tenants SET rpm = ?, tpm = ? WHERE id = ?').run(next.rpm, next.tpm, tenant.id);
    return next;
  }

  byName(name: string): Tenant | undefined {
    return this.db.prepare('SELECT id, name, rpm, tpm, created FROM tenants WHERE name = ?').get(name) as Tenant | undefined;
  }

  byId(id: number): Tenant | undefined {
    return this.db.prepare('SELECT id, name, rpm, tpm, created FROM tenants WHERE id = ?').get(id) as Tenant | undefined;
  }

  list(): Tenant[] {
    return this.db.prepare('SELECT id, name, rpm, tpm, created FROM tenants ORDER BY name').all() as Tenant[];
  }

  /** Removes the tenant and (by cascade) its keys. */
  delete(name: string): boolean {
    return this.db.prepare('DELETE FROM tenants WHERE name = ?').run(name).changes > 0;
  }
}

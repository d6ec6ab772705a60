// API keys: only their SHA-256 is stored; the key itself is shown once, when created.
import { createHash, randomBytes } from 'node:crypto';
import { isForeignKeyViolation } from './errors.js';
import type { Db } from './schema.js';
import type { Tenant } from './tenants.js';
import { nowSeconds } from './time.js';

export const KEY_PREFIX = 'sk-para-';

export interface ApiKeyRecord {
  id: string;
  prefix: string;
  created: number;
}

export const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

export class KeyStore {
  constructor(private readonly db: Db) {}

  /** Returns the new key in clear text together with its record. */
  /** A new key for the tenant; undefined when the tenant is gone (deleted since it was looked up). */
  async create(tenantId: number): Promise<(ApiKeyRecord & { key: string }) | undefined> {
    const key = KEY_PREFIX + randomBytes(24).toString('base64url');
    const record = { id: `key_${randomBytes(8).toString('hex')}`, prefix: key.slice(0, KEY_PREFIX.length + 4), created: nowSeconds() };
    try {
      await this.db.insertInto('api_keys').values({ ...record, tenant_id: tenantId, hash: sha256Hex(key) }).execute();
    } catch (err) {
      if (isForeignKeyViolation(err)) return undefined;
      throw err;
    }
    return { ...record, key };
  }

  /** The tenant owning this key, if any: one query, as every request asks it. */
  async tenantForKey(key: string): Promise<Tenant | undefined> {
    return this.db
      .selectFrom('api_keys as k')
      .innerJoin('tenants as t', 't.id', 'k.tenant_id')
      .select(['t.id', 't.name', 't.rpm', 't.tpm', 't.created'])
      .where('k.hash', '=', sha256Hex(key))
      .executeTakeFirst();
  }

  async list(tenantId: number): Promise<ApiKeyRecord[]> {
    return this.db.selectFrom('api_keys').select(['id', 'prefix', 'created']).where('tenant_id', '=', tenantId).orderBy('created').orderBy('id').execute();
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.db.deleteFrom('api_keys').where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}

// API keys: only their SHA-256 is stored; the key itself is shown once, when created.
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from './database.js';
import { nowSeconds } from './database.js';

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
  create(tenantId: number): ApiKeyRecord & { key: string } {
    const key = KEY_PREFIX + randomBytes(24).toString('base64url');
    const record = { id: `key_${randomBytes(8).toString('hex')}`, prefix: key.slice(0, KEY_PREFIX.length + 4), created: nowSeconds() };
    this.db
      .prepare('INSERT INTO api_keys (id, tenant_id, hash, prefix, created) VALUES (?, ?, ?, ?, ?)')
      .run(record.id, tenantId, sha256Hex(key), record.prefix, record.created);
    return { ...record, key };
  }

  /** The tenant id owning this key, if any. */
  tenantIdForKey(key: string): number | undefined {
    const row = this.db.prepare('SELECT tenant_id FROM api_keys WHERE hash = ?').get(sha256Hex(key)) as
      | { tenant_id: number }
      | undefined;
    return row?.tenant_id;
  }

  list(tenantId: number): ApiKeyRecord[] {
    return this.db
      .prepare('SELECT id, prefix, created FROM api_keys WHERE tenant_id = ? ORDER BY created, id')
      .all(tenantId) as ApiKeyRecord[];
  }

  delete(id: string): boolean {
    return this.db.prepare('DELETE FROM api_keys WHERE id = ?').run(id).changes > 0;
  }
}

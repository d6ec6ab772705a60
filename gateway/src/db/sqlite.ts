// The embedded back-end: one SQLite file (better-sqlite3) for a single gateway; `para serve` needs nothing else.
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Tables } from './schema.js';

/**
 * A file from before tenant ids owned usage (PRAGMA user_version 0: tenants without AUTOINCREMENT, usage keyed
 * by tenant name) is rebuilt in place first (SQLite cannot add AUTOINCREMENT to a table), usage rows moved to
 * their tenant's id and rows of tenants that no longer exist dropped. That layout predates the migrator, so
 * this one step stays outside it; the result is what migration 001 expects to find.
 */
function upgradeFromVersion0(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version !== 0) return;
  const existing = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tenants'").get() as { sql: string } | undefined;
  // A new file (the migrator makes the current layout) or one the migrator made: marked, never rebuilt (a rebuild
  // would reset the id sequence, so a deleted tenant's id could be given again). By its schema, not only its mark.
  if (!existing || /AUTOINCREMENT/i.test(existing.sql)) {
    db.pragma('user_version = 1');
    return;
  }
  db.pragma('foreign_keys = OFF'); // api_keys references tenants while the table is rebuilt
  db.transaction(() => {
    db.exec(`
      CREATE TABLE tenants_v1 (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, rpm INTEGER NOT NULL,
                               tpm INTEGER NOT NULL, created INTEGER NOT NULL);
      INSERT INTO tenants_v1 (id, name, rpm, tpm, created) SELECT id, name, rpm, tpm, created FROM tenants;
      DROP TABLE tenants;
      ALTER TABLE tenants_v1 RENAME TO tenants;
      CREATE TABLE IF NOT EXISTS tenant_usage (tenant_id INTEGER NOT NULL, model TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, model));`);
    const hasUsage = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'").get();
    if (hasUsage) {
      db.exec(`
        INSERT INTO tenant_usage (tenant_id, model, requests, prompt_tokens, completion_tokens)
          SELECT CASE WHEN u.tenant = '' THEN 0 ELSE t.id END, u.model, u.requests, u.prompt_tokens, u.completion_tokens
          FROM usage u LEFT JOIN tenants t ON t.name = u.tenant WHERE u.tenant = '' OR t.id IS NOT NULL;
        DROP TABLE usage;`);
    }
  })();
  db.pragma('foreign_keys = ON');
  db.pragma('user_version = 1');
}

export interface SqliteHandles {
  db: Kysely<Tables>;
}

/** Opens (creating if needed) a SQLite file; ':memory:' keeps everything in memory. */
export function openSqlite(file: string): SqliteHandles {
  const raw = new Database(file);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('foreign_keys = ON');
  upgradeFromVersion0(raw);
  return { db: new Kysely<Tables>({ dialect: new SqliteDialect({ database: raw }) }) };
}

// The gateway's state (tenants, hashed keys, adapter versions, usage) in one SQLite file.
import Database from 'better-sqlite3';

export type Db = Database.Database;

// Adapter rows are never removed, only marked deleted: version numbers stay unique forever, and a worker-side
// name like `acme/support@2` can never point at two different weights. Tenant ids are AUTOINCREMENT, so an id
// is never reused either: usage belongs to the id, and a tenant deleted and created again with the same name
// is a new tenant with nothing inherited.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS tenants (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  rpm INTEGER NOT NULL,
  tpm INTEGER NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS adapters (
  id INTEGER PRIMARY KEY,
  owner TEXT NOT NULL,            -- tenant name; '' for a shared adapter
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  parameters INTEGER NOT NULL,
  dir TEXT NOT NULL,
  created INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  UNIQUE (owner, name, version)
);
CREATE TABLE IF NOT EXISTS tenant_usage (
  tenant_id INTEGER NOT NULL,     -- tenants.id; 0 for the operator
  model TEXT NOT NULL,            -- model id without version ('base' for the bare backbone)
  requests INTEGER NOT NULL DEFAULT 0,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, model)
);
`;

/** PRAGMA user_version of the schema above. */
const SCHEMA_VERSION = 1;

/**
 * Version 0 (before usage belonged to tenant ids): tenants without AUTOINCREMENT, usage keyed by tenant name.
 * Rebuilt in place (SQLite cannot add AUTOINCREMENT to a table), usage rows moved to their tenant's id; rows
 * of tenants that no longer exist are dropped.
 */
function migrateFromVersion0(db: Database.Database): void {
  db.pragma('foreign_keys = OFF'); // api_keys references tenants while the table is rebuilt
  db.transaction(() => {
    db.exec(`
      CREATE TABLE tenants_v1 (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, rpm INTEGER NOT NULL,
                               tpm INTEGER NOT NULL, created INTEGER NOT NULL);
      INSERT INTO tenants_v1 (id, name, rpm, tpm, created) SELECT id, name, rpm, tpm, created FROM tenants;
      DROP TABLE tenants;
      ALTER TABLE tenants_v1 RENAME TO tenants;`);
    db.exec(SCHEMA);
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
}

export function openDatabase(file: string): Db {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  const version = db.pragma('user_version', { simple: true }) as number;
  const existing = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tenants'").get();
  if (existing && version === 0) migrateFromVersion0(db);
  db.exec(SCHEMA);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
  // A version still pending at start was being written when the process stopped: it never became visible.
  db.prepare('UPDATE adapters SET deleted = 1 WHERE deleted = 2').run();
  return db;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

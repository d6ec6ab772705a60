// The gateway's state (tenants, hashed keys, adapter versions, usage) in one SQLite file.
import Database from 'better-sqlite3';

export type Db = Database.Database;

// Adapter rows are never removed, only marked deleted: version numbers stay unique forever, and a worker-side
// name like `acme/support@2` can never point at two different weights.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS tenants (
  id INTEGER PRIMARY KEY,
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
CREATE TABLE IF NOT EXISTS usage (
  tenant TEXT NOT NULL,           -- '' for the operator
  model TEXT NOT NULL,            -- model id without version ('base' for the bare backbone)
  requests INTEGER NOT NULL DEFAULT 0,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant, model)
);
`;

export function openDatabase(file: string): Db {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.exec(SCHEMA);
  // A version still pending at start was being written when the process stopped: it never became visible.
  db.prepare('UPDATE adapters SET deleted = 1 WHERE deleted = 2').run();
  return db;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

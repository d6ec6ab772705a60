// Adapter versions. A row is never removed, only marked deleted, so a version number is never reused.
// The `deleted` column: 0 live, 1 deleted, 2 pending (files still being written).
import type { Db } from './database.js';

export interface AdapterVersion {
  owner: string; // tenant name, '' when shared
  name: string;
  version: number;
  sha256: string;
  bytes: number;
  parameters: number;
  dir: string;
  created: number;
}

const COLUMNS = 'owner, name, version, sha256, bytes, parameters, dir, created';

export class AdapterStore {
  constructor(private readonly db: Db) {}

  /**
   * Reserves the next version number of (owner, name) and inserts the row as pending (state 2), atomically;
   * activate() makes it visible once its files are on disk.
   */
  insertPending(row: Omit<AdapterVersion, 'version' | 'dir'>, dirFor: (version: number) => string): AdapterVersion {
    return this.db.transaction(() => {
      const last = this.db
        .prepare('SELECT MAX(version) AS v FROM adapters WHERE owner = ? AND name = ?')
        .get(row.owner, row.name) as { v: number | null };
      const version = (last.v ?? 0) + 1;
      const full: AdapterVersion = { ...row, version, dir: dirFor(version) };
      this.db
        .prepare(`INSERT INTO adapters (${COLUMNS}, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2)`)
        .run(full.owner, full.name, full.version, full.sha256, full.bytes, full.parameters, full.dir, full.created);
      return full;
    })();
  }

  activate(owner: string, name: string, version: number): void {
    this.db.prepare('UPDATE adapters SET deleted = 0 WHERE owner = ? AND name = ? AND version = ?').run(owner, name, version);
  }

  /** Live versions of one adapter, oldest first. */
  versions(owner: string, name: string): AdapterVersion[] {
    return this.db
      .prepare(`SELECT ${COLUMNS} FROM adapters WHERE owner = ? AND name = ? AND deleted = 0 ORDER BY version`)
      .all(owner, name) as AdapterVersion[];
  }

  /** Live versions of every adapter the owners hold, grouped by the caller. */
  listFor(owners: string[]): AdapterVersion[] {
    if (owners.length === 0) return [];
    const marks = owners.map(() => '?').join(', ');
    return this.db
      .prepare(`SELECT ${COLUMNS} FROM adapters WHERE deleted = 0 AND owner IN (${marks}) ORDER BY owner, name, version`)
      .all(...owners) as AdapterVersion[];
  }

  listAll(): AdapterVersion[] {
    return this.db
      .prepare(`SELECT ${COLUMNS} FROM adapters WHERE deleted = 0 ORDER BY owner, name, version`)
      .all() as AdapterVersion[];
  }

  /** Marks versions deleted (all when version is undefined); returns the rows marked. */
  markDeleted(owner: string, name: string, version?: number, pending = false): AdapterVersion[] {
    return this.db.transaction(() => {
      const rows = pending
        ? (this.db
            .prepare(`SELECT ${COLUMNS} FROM adapters WHERE owner = ? AND name = ? AND version = ? AND deleted = 2`)
            .all(owner, name, version) as AdapterVersion[])
        : this.versions(owner, name).filter((r) => version === undefined || r.version === version);
      const stmt = this.db.prepare('UPDATE adapters SET deleted = 1 WHERE owner = ? AND name = ? AND version = ?');
      for (const r of rows) stmt.run(owner, name, r.version);
      return rows;
    })();
  }

  markOwnerDeleted(owner: string): AdapterVersion[] {
    return this.db.transaction(() => {
      const rows = this.listFor([owner]);
      this.db.prepare('UPDATE adapters SET deleted = 1 WHERE owner = ?').run(owner);
      return rows;
    })();
  }
}

// The one storage interface the gateway uses: tenants, keys, adapter versions, usage and the rate limiter's
// windows, on SQLite (embedded, one gateway) or PostgreSQL (shared by replicas). Both back-ends run the same
// Kysely queries and the same migrations; what differs is the connection and a few column types.
import { sql } from 'kysely';
import type pg from 'pg';
import { type AdapterVersion, AdapterStore } from './adapters.js';
import { KeyStore } from './keys.js';
import { type Dialect, migrateToLatest } from './migrations.js';
import { isPostgresUrl, openPostgres } from './postgres.js';
import type { Db } from './schema.js';
import { openSqlite } from './sqlite.js';
import { type Tenant, TenantStore } from './tenants.js';
import { UsageStore } from './usage.js';

/**
 * Where the rate limiter keeps its windows: in PostgreSQL, shared by every replica (RateLimiterPostgres), or
 * for a SQLite store, which serves one gateway, in that gateway's memory (RateLimiterMemory): exact for the one
 * process, and three writes per request cheaper.
 */
export type LimiterConnection = { dialect: 'sqlite' } | { dialect: 'postgres'; client: pg.Pool };

export interface Store {
  readonly dialect: Dialect;
  readonly db: Db;
  readonly tenants: TenantStore;
  readonly keys: KeyStore;
  readonly adapters: AdapterStore;
  readonly usage: UsageStore;
  readonly limiterConnection: LimiterConnection;
  /**
   * Deletes a tenant with its keys (by cascade) and usage, and marks its adapter versions deleted, in one
   * transaction; returns the tenant and the versions marked (their files are the caller's to free), or
   * undefined when there is no such tenant.
   */
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>;
  removeTenant(name: string): Promise<{ tenant: Tenant; adapters: AdapterVersion[] } | undefined>;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** PostgreSQL connections per gateway. */
  poolSize?: number;
  /** An idle PostgreSQL connection failed (the server restarted); the pool replaces it. */
  onConnectionError?: (err: Error) => void;
}

export class StoreConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreConfigError';
  }
}

/** A store for `--db`: a postgres:// or postgresql:// URL, else a SQLite file (':memory:' for none). Migrates. */
export async function openStore(db: string, options: StoreOptions = {}): Promise<Store> {
  let handles: { db: Db; limiterConnection: LimiterConnection; closeLimiter: () => Promise<void> };
  if (isPostgresUrl(db)) {
    const pgHandles = openPostgres(db, options.poolSize ?? 10, options.onConnectionError ?? (() => undefined));
    handles = { db: pgHandles.db, limiterConnection: { dialect: 'postgres', client: pgHandles.limiter }, closeLimiter: () => pgHandles.limiter.end() };
  } else {
    if (options.poolSize !== undefined) throw new StoreConfigError('a connection pool size applies to PostgreSQL only; --db names a SQLite file');
    const sqlite = openSqlite(db);
    handles = { db: sqlite.db, limiterConnection: { dialect: 'sqlite' }, closeLimiter: async () => undefined };
  }
  const dialect = handles.limiterConnection.dialect;
  try {
    await migrateToLatest(handles.db, dialect);
  } catch (err) {
    await handles.db.destroy();
    await handles.closeLimiter();
    throw err;
  }
  return {
    dialect,
    db: handles.db,
    tenants: new TenantStore(handles.db),
    keys: new KeyStore(handles.db),
    adapters: new AdapterStore(handles.db, dialect === 'postgres'),
    usage: new UsageStore(handles.db, dialect === 'postgres'),
    limiterConnection: handles.limiterConnection,
    ping: async () => {
      await sql`SELECT 1`.execute(handles.db);
    },
    removeTenant: (name) =>
      handles.db.transaction().execute(async (trx) => {
        const tenants = new TenantStore(trx);
        const tenant = await tenants.byName(name);
        // by id: a concurrent deletion (then nothing is deleted here) must not take a tenant created again meanwhile
        if (!tenant || !(await tenants.deleteById(tenant.id))) return undefined;
        const adapters = await new AdapterStore(trx).markOwnerDeleted(name);
        await new UsageStore(trx).forgetTenant(tenant.id);
        return { tenant, adapters };
      }),
    close: async () => {
      await handles.closeLimiter();
      await handles.db.destroy();
    },
  };
}

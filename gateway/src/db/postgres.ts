// The shared back-end: PostgreSQL (node-postgres pool) for several gateway replicas, `--db postgres://…`.
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Tables } from './schema.js';

const INT8 = 20;
const NUMERIC = 1700;

export const isPostgresUrl = (db: string) => /^postgres(ql)?:\/\//i.test(db);

/**
 * BIGINT columns and SUM() come back from PostgreSQL as strings (they can exceed 2^53); every value here is a
 * count or a limit kept at or below Number.MAX_SAFE_INTEGER by the API's schemas, so they are read as numbers.
 */
function numericTypes(): pg.CustomTypesConfig {
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8, (v: string) => Number(v));
  types.setTypeParser(NUMERIC, (v: string) => Number(v));
  return types;
}

export interface PostgresHandles {
  db: Kysely<Tables>;
  /** A pool of its own for the rate limiter's table (rate-limiter-flexible's RateLimiterPostgres). */
  limiter: pg.Pool;
}

/**
 * The stores' pool, and a smaller one for the rate limiter whose sessions commit without waiting for the
 * WAL flush (synchronous_commit off): a window lost to a database crash only lets a tenant start its minute
 * afresh, and not waiting for the disk takes a flush off the admission of every request. Usage, tenants,
 * keys and adapters keep the durable default.
 */
export function openPostgres(url: string, poolSize: number, onIdleError: (err: Error) => void): PostgresHandles {
  const types = numericTypes();
  const main = new pg.Pool({ connectionString: url, max: poolSize, types });
  const limiter = new pg.Pool({ connectionString: url, max: Math.max(2, Math.ceil(poolSize / 2)), types, options: '-c synchronous_commit=off' });
  // An idle client's connection that drops (the server restarted) is reported here, not thrown at the process.
  main.on('error', onIdleError);
  limiter.on('error', onIdleError);
  return { db: new Kysely<Tables>({ dialect: new PostgresDialect({ pool: main }) }), limiter };
}

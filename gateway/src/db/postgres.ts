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
  /** The same pool, for the rate limiter's table (rate-limiter-flexible's RateLimiterPostgres). */
  raw: pg.Pool;
}

export function openPostgres(url: string, poolSize: number, onIdleError: (err: Error) => void): PostgresHandles {
  const raw = new pg.Pool({ connectionString: url, max: poolSize, types: numericTypes() });
  // An idle client's connection that drops (the server restarted) is reported here, not thrown at the process.
  raw.on('error', onIdleError);
  return { db: new Kysely<Tables>({ dialect: new PostgresDialect({ pool: raw }) }), raw };
}

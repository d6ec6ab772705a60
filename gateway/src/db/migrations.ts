// Versioned schema migrations, run at start by Kysely's Migrator (which records them in `kysely_migration`
// and holds a lock while it runs, so replicas starting together on one PostgreSQL migrate once). Never edit
// a migration that has shipped: add the next one.
import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

/**
 * Integer columns that can hold a limit up to Number.MAX_SAFE_INTEGER or a running total: SQLite's INTEGER is
 * 64-bit already, PostgreSQL needs BIGINT (read back as a number, see postgres.ts).
 */
const big = (dialect: Dialect) => (dialect === 'postgres' ? 'bigint' : 'integer');

// Adapter rows are never removed, only marked deleted: version numbers stay unique forever, and a worker-side
// name like `acme/support@2` can never point at two different weights. Tenant ids are never reused either
// (AUTOINCREMENT, a sequence): usage belongs to the id, and a tenant deleted and created again with the same
// name is a new tenant with nothing inherited. `if not exists` throughout: a SQLite file made before the
// migrator already holds these tables (see sqlite.ts).
const initial = (dialect: Dialect): Migration => ({
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('tenants')
      .ifNotExists()
      .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('rpm', big(dialect), (c) => c.notNull())
      .addColumn('tpm', big(dialect), (c) => c.notNull())
      .addColumn('created', big(dialect), (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('api_keys')
      .ifNotExists()
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', big(dialect), (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('hash', 'text', (c) => c.notNull().unique())
      .addColumn('prefix', 'text', (c) => c.notNull())
      .addColumn('created', big(dialect), (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('adapters')
      .ifNotExists()
      .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) => c.primaryKey())
      .addColumn('owner', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('bytes', big(dialect), (c) => c.notNull())
      .addColumn('parameters', big(dialect), (c) => c.notNull())
      .addColumn('dir', 'text', (c) => c.notNull())
      .addColumn('created', big(dialect), (c) => c.notNull())
      .addColumn('deleted', 'integer', (c) => c.notNull().defaultTo(0))
      .addUniqueConstraint('adapters_owner_name_version', ['owner', 'name', 'version'])
      .execute();
    await db.schema
      .createTable('tenant_usage')
      .ifNotExists()
      .addColumn('tenant_id', big(dialect), (c) => c.notNull())
      .addColumn('model', 'text', (c) => c.notNull())
      .addColumn('requests', big(dialect), (c) => c.notNull().defaultTo(0))
      .addColumn('prompt_tokens', big(dialect), (c) => c.notNull().defaultTo(0))
      .addColumn('completion_tokens', big(dialect), (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('tenant_usage_pk', ['tenant_id', 'model'])
      .execute();
  },
});

// Adapter files become content-addressed blobs (registry/blobs.ts): a version names its config's blob here and
// its weights' by `sha256`. A row is inserted only once both blobs are complete, so the pending state (2) of
// the folder era is gone; a row still pending was being written when its process stopped and never showed.
const blobs = (dialect: Dialect): Migration => ({
  async up(db: Kysely<any>) {
    if (!(await hasColumn(db, dialect, 'adapters', 'config_sha256'))) {
      await db.schema.alterTable('adapters').addColumn('config_sha256', 'text').execute();
    }
    await sql`UPDATE adapters SET deleted = 1 WHERE deleted = 2`.execute(db);
  },
});

// The rate limiter's windows on PostgreSQL (rate-limiter-flexible's table layout: key, points, expire in ms),
// created here rather than by the library so replicas starting together do not race to create it, and with
// BIGINT points: a tokens-per-minute limit can be far above 2^31. A SQLite file serves one gateway, which
// keeps its windows in memory (limits.ts), so there is nothing to create.
const rateLimits = (dialect: Dialect): Migration => ({
  async up(db: Kysely<any>) {
    if (dialect === 'sqlite') return;
    await db.schema
      .createTable(RATE_LIMIT_TABLE)
      .ifNotExists()
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('points', big(dialect), (c) => c.notNull().defaultTo(0))
      .addColumn('expire', big(dialect))
      .execute();
  },
});

export const RATE_LIMIT_TABLE = 'rate_limits';

// Adapters of two kinds (PARA and peft LoRA), recorded per version so listings say which; and usage by the end
// user a request names (OpenAI's `user`), beside the per-tenant totals.
const kindsAndUsers = (dialect: Dialect): Migration => ({
  async up(db: Kysely<any>) {
    if (!(await hasColumn(db, dialect, 'adapters', 'kind'))) {
      await db.schema.alterTable('adapters').addColumn('kind', 'text', (c) => c.notNull().defaultTo('para')).execute();
    }
    await db.schema
      .createTable('user_usage')
      .ifNotExists()
      .addColumn('tenant_id', big(dialect), (c) => c.notNull())
      .addColumn('model', 'text', (c) => c.notNull())
      .addColumn('end_user', 'text', (c) => c.notNull())
      .addColumn('requests', big(dialect), (c) => c.notNull().defaultTo(0))
      .addColumn('prompt_tokens', big(dialect), (c) => c.notNull().defaultTo(0))
      .addColumn('completion_tokens', big(dialect), (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('user_usage_pk', ['tenant_id', 'model', 'end_user'])
      .execute();
  },
});

/**
 * Every step may find its work done already: on SQLite the migrator runs a migration outside any transaction, so
 * a process stopped inside one leaves its first statements applied and the migration unrecorded, and the next
 * start runs it again.
 */
async function hasColumn(db: Kysely<any>, dialect: Dialect, table: string, column: string): Promise<boolean> {
  // In the schema the migrations write to (PostgreSQL's current schema; SQLite has one), not a namesake elsewhere.
  const found =
    dialect === 'sqlite'
      ? await sql<{ n: number }>`SELECT COUNT(*) AS n FROM pragma_table_info(${table}) WHERE name = ${column}`.execute(db)
      : await sql<{ n: number }>`SELECT COUNT(*) AS n FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = ${table} AND column_name = ${column}`.execute(db);
  return Number(found.rows[0]?.n ?? 0) > 0;
}

class StaticProvider implements MigrationProvider {
  constructor(private readonly migrations: Record<string, Migration>) {}
  async getMigrations() {
    return this.migrations;
  }
}

export const migrationsFor = (dialect: Dialect): Record<string, Migration> => ({
  '001_initial': initial(dialect),
  '002_adapter_blobs': blobs(dialect),
  '003_rate_limits': rateLimits(dialect),
  '004_adapter_kinds_user_usage': kindsAndUsers(dialect),
});

export class MigrationError extends Error {
  constructor(
    readonly migration: string | undefined,
    failure: unknown,
  ) {
    super(`database migration ${migration ?? '(setup)'} failed: ${failure instanceof Error ? failure.message : String(failure)}`, { cause: failure });
    this.name = 'MigrationError';
  }
}

/** Runs every migration not yet applied; throws MigrationError naming the one that failed. */
export async function migrateToLatest(db: Kysely<any>, dialect: Dialect): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticProvider(migrationsFor(dialect)) });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error) throw new MigrationError(results.find((r) => r.status === 'Error')?.migrationName, error);
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

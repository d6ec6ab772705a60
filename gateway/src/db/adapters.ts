// Adapter versions. A row is never removed, only marked deleted (`deleted` 1), so a version number is never
// reused. A row is inserted only after its blobs are complete on the shared path (registry/blobs.ts), so every
// row a replica can read names files that exist.
import { type Selectable, sql } from 'kysely';
import type { AdaptersTable, Db } from './schema.js';
import { isUniqueViolation } from './errors.js';

/** One version as the store hands it out: its row without the surrogate key and the deleted mark. */
export type AdapterVersion = Omit<Selectable<AdaptersTable>, 'id' | 'deleted'>;

const COLUMNS = ['owner', 'name', 'version', 'sha256', 'config_sha256', 'bytes', 'parameters', 'dir', 'created', 'kind'] as const;

/** Two replicas inserting the next version of one adapter at once: one of them takes the number again. */
const INSERT_ATTEMPTS = 10;

export class AdapterStore {
  /** `lockTenants`: PostgreSQL, where an insert's check of its tenant locks the tenant's row (see insertNext). */
  constructor(
    private readonly db: Db,
    private readonly lockTenants = false,
  ) {}

  /**
   * Inserts the next version of (owner, name), live at once. One statement takes the number and inserts the
   * row (INSERT … SELECT MAX + 1), so no other writer sees it half-done; on PostgreSQL two replicas can still
   * compute the same number, and the unique key makes one of them try again.
   *
   * `tenantId`: the tenant that owns the row (null for a shared adapter). The row goes in only while that tenant
   * still exists under the owner's name, in the same statement: an upload can take a minute (the worker checks
   * the weights), and a tenant deleted meanwhile, or deleted and created again, must not get the row (a new
   * tenant of that name would inherit it). On PostgreSQL the check locks the tenant's row, so a deletion that
   * has not committed yet either waits for the insert (and then marks its row deleted) or wins (no insert).
   * Undefined when the tenant is gone.
   */
  async insertNext(row: Omit<AdapterVersion, 'version'>, tenantId: number | null): Promise<AdapterVersion | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        let next = this.db
          .selectFrom('adapters')
          .select([
            sql<string>`CAST(${row.owner} AS TEXT)`.as('owner'),
            sql<string>`CAST(${row.name} AS TEXT)`.as('name'),
            sql<number>`COALESCE(MAX(version), 0) + 1`.as('version'),
            sql<string>`CAST(${row.sha256} AS TEXT)`.as('sha256'),
            sql<string | null>`CAST(${row.config_sha256} AS TEXT)`.as('config_sha256'),
            sql<number>`CAST(${row.bytes} AS BIGINT)`.as('bytes'),
            sql<number>`CAST(${row.parameters} AS BIGINT)`.as('parameters'),
            sql<string>`CAST(${row.dir} AS TEXT)`.as('dir'),
            sql<number>`CAST(${row.created} AS BIGINT)`.as('created'),
            sql<string>`CAST(${row.kind} AS TEXT)`.as('kind'),
            sql<number>`0`.as('deleted'),
          ])
          .where('owner', '=', row.owner)
          .where('name', '=', row.name);
        if (tenantId !== null) {
          const owner = this.db.selectFrom('tenants').select('id').where('id', '=', tenantId).where('name', '=', row.owner);
          next = next.having((eb) => eb.exists(this.lockTenants ? owner.forKeyShare() : owner));
        }
        const inserted = await this.db
          .insertInto('adapters')
          .columns(['owner', 'name', 'version', 'sha256', 'config_sha256', 'bytes', 'parameters', 'dir', 'created', 'kind', 'deleted'])
          .expression(next)
          .returning('version')
          .executeTakeFirst();
        return inserted === undefined ? undefined : { ...row, version: Number(inserted.version) };
      } catch (err) {
        if (!isUniqueViolation(err) || attempt >= INSERT_ATTEMPTS) throw err;
      }
    }
  }

  /** Live versions of one adapter, oldest first. */
  async versions(owner: string, name: string): Promise<AdapterVersion[]> {
    return this.db
      .selectFrom('adapters')
      .select(COLUMNS)
      .where('owner', '=', owner)
      .where('name', '=', name)
      .where('deleted', '=', 0)
      .orderBy('version')
      .execute();
  }

  /** Live versions of every adapter the owners hold. */
  async listFor(owners: string[]): Promise<AdapterVersion[]> {
    if (owners.length === 0) return [];
    return this.db
      .selectFrom('adapters')
      .select(COLUMNS)
      .where('deleted', '=', 0)
      .where('owner', 'in', owners)
      .orderBy('owner')
      .orderBy('name')
      .orderBy('version')
      .execute();
  }

  async listAll(): Promise<AdapterVersion[]> {
    return this.db.selectFrom('adapters').select(COLUMNS).where('deleted', '=', 0).orderBy('owner').orderBy('name').orderBy('version').execute();
  }

  /** Marks versions deleted (all when version is undefined); returns the rows marked. */
  async markDeleted(owner: string, name: string, version?: number): Promise<AdapterVersion[]> {
    let query = this.db.updateTable('adapters').set({ deleted: 1 }).where('owner', '=', owner).where('name', '=', name).where('deleted', '=', 0);
    if (version !== undefined) query = query.where('version', '=', version);
    return query.returning(COLUMNS).execute();
  }

  async markOwnerDeleted(owner: string): Promise<AdapterVersion[]> {
    return this.db.updateTable('adapters').set({ deleted: 1 }).where('owner', '=', owner).where('deleted', '=', 0).returning(COLUMNS).execute();
  }

  /** Whether a live version still uses the blob with this SHA-256 (as weights or as config). */
  async blobInUse(sha256: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('adapters')
      .select('id')
      .where('deleted', '=', 0)
      .where((eb) => eb.or([eb('sha256', '=', sha256), eb('config_sha256', '=', sha256)]))
      .executeTakeFirst();
    return row !== undefined;
  }
}

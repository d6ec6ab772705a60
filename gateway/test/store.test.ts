// The store suite: the same tests on both back-ends, SQLite (a temporary file) and PostgreSQL (the run's own
// server, helpers/postgres.ts). Where a test opens two stores on one database, they stand for two replicas.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { type Store, openStore } from '../src/db/store.js';
import { OPERATOR_ID } from '../src/db/usage.js';
import { ApiError } from '../src/errors.js';
import { RateLimiter } from '../src/limits.js';
import { freshDatabase } from './helpers/postgres.js';

const sqliteDir = mkdtempSync(join(tmpdir(), 'para-store-'));
afterAll(() => rmSync(sqliteDir, { recursive: true, force: true }));
let files = 0;

const backends: [string, () => Promise<string>][] = [
  ['sqlite', async () => join(sqliteDir, `store-${files++}.db`)],
  ['postgres', () => freshDatabase(inject('postgresUrl'), 'store')],
];

const version = (owner: string, name: string, sha = 'a'.repeat(64)) => ({
  owner, name, sha256: sha, config_sha256: 'c'.repeat(64), bytes: 10, parameters: 5, dir: '', created: 1, kind: 'para',
});

describe.each(backends)('store on %s', (dialect, newDatabase) => {
  const opened: Store[] = [];
  const open = async (db: string) => {
    const store = await openStore(db);
    opened.push(store);
    return store;
  };
  afterAll(async () => {
    for (const s of opened) await s.close();
  });

  it('runs every migration once, and none again when opened a second time', async () => {
    const db = await newDatabase();
    const first = await open(db);
    expect(first.dialect).toBe(dialect);
    const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(first.db);
    expect(applied.rows.map((r) => r.name)).toEqual(['001_initial', '002_adapter_blobs', '003_rate_limits', '004_adapter_kinds_user_usage']);
    await first.tenants.create('kept', 1, 2);
    const second = await open(db);
    expect(Number((await sql<{ n: number }>`SELECT COUNT(*) AS n FROM kysely_migration`.execute(second.db)).rows[0]!.n)).toBe(4);
    expect(await second.tenants.byName('kept')).toMatchObject({ name: 'kept', rpm: 1, tpm: 2 });
  });

  it('finishes a migration that a stopped process left half-applied (SQLite runs each outside a transaction)', async () => {
    const db = await newDatabase();
    const first = await open(db);
    // 004 as a process stopped inside it leaves it: its first statement applied (adapters.kind), the rest not.
    await sql`DROP TABLE user_usage`.execute(first.db);
    await sql`DELETE FROM kysely_migration WHERE name = '004_adapter_kinds_user_usage'`.execute(first.db);
    const again = await open(db);
    expect(Number((await sql<{ n: number }>`SELECT COUNT(*) AS n FROM kysely_migration`.execute(again.db)).rows[0]!.n)).toBe(4);
    const t = (await again.tenants.create('resumed', 1, 1))!;
    await again.usage.record(t.id, 'copa', 1, 2, 3, 'ann'); // user_usage is back
    expect(await again.usage.byUser()).toEqual([{ tenant: 'resumed', model: 'copa', user: 'ann', requests: 1, prompt_tokens: 2, completion_tokens: 3 }]);
  });

  it('never hands out a deleted tenant id again, across restarts', async () => {
    const db = await newDatabase();
    const first = await open(db);
    await first.tenants.create('a', 1, 1);
    const b = (await first.tenants.create('b', 1, 1))!;
    await first.removeTenant('b');
    const second = await open(db); // SQLite: a file the migrator made is not rebuilt as a pre-migrator one
    expect((await second.tenants.create('c', 1, 1))!.id).toBeGreaterThan(b.id);
  });

  it('creates, changes, lists and deletes tenants; a name is unique, an id is never handed out again', async () => {
    const store = await open(await newDatabase());
    const acme = await store.tenants.create('acme', 10, 1000);
    expect(acme).toMatchObject({ name: 'acme', rpm: 10, tpm: 1000 });
    expect(typeof acme!.id).toBe('number');
    expect(await store.tenants.create('acme', 1, 1)).toBeUndefined();
    expect(await store.tenants.update('acme', { tpm: Number.MAX_SAFE_INTEGER })).toMatchObject({ rpm: 10, tpm: Number.MAX_SAFE_INTEGER });
    expect(await store.tenants.byId(acme!.id)).toMatchObject({ name: 'acme', tpm: Number.MAX_SAFE_INTEGER });
    expect(await store.tenants.update('nobody', { rpm: 1 })).toBeUndefined();
    await store.tenants.create('beta', 1, 1);
    expect((await store.tenants.list()).map((t) => t.name)).toEqual(['acme', 'beta']);
    expect(await store.tenants.deleteById(acme!.id)).toBe(true);
    expect(await store.tenants.deleteById(acme!.id)).toBe(false);
    const again = await store.tenants.create('acme', 1, 1);
    expect(again!.id).toBeGreaterThan(acme!.id);
  });

  it('stores only key hashes, finds the tenant by key, and drops keys with their tenant', async () => {
    const store = await open(await newDatabase());
    const t = (await store.tenants.create('keyed', 1, 1))!;
    const k1 = (await store.keys.create(t.id))!;
    const k2 = (await store.keys.create(t.id))!;
    expect(k1.key).toMatch(/^sk-para-/);
    expect((await store.keys.tenantForKey(k1.key))?.id).toBe(t.id);
    expect(await store.keys.tenantForKey(k2.key)).toEqual(t);
    expect(await store.keys.tenantForKey('sk-para-nope')).toBeUndefined();
    const hashes = await store.db.selectFrom('api_keys').select('hash').execute();
    expect(hashes.map((h) => h.hash)).not.toContain(k1.key);
    expect((await store.keys.list(t.id)).map((k) => k.id).sort()).toEqual([k1.id, k2.id].sort());
    expect(await store.keys.delete(k1.id)).toBe(true);
    expect(await store.keys.tenantForKey(k1.key)).toBeUndefined();
    await store.tenants.deleteById(t.id);
    expect(await store.keys.tenantForKey(k2.key)).toBeUndefined();
    expect(await store.keys.create(t.id)).toBeUndefined(); // a tenant deleted since it was looked up: no key, no error
  });

  it('numbers adapter versions, never reuses a deleted number, and knows which blobs live versions use', async () => {
    const store = await open(await newDatabase());
    expect((await store.adapters.insertNext(version('acme', 'support'), null))!.version).toBe(1);
    expect((await store.adapters.insertNext(version('acme', 'support', 'b'.repeat(64)), null))!.version).toBe(2);
    expect((await store.adapters.insertNext(version('', 'copa'), null))!.version).toBe(1);
    expect((await store.adapters.markDeleted('acme', 'support', 2)).map((r) => r.version)).toEqual([2]);
    expect(await store.adapters.blobInUse('b'.repeat(64))).toBe(false);
    expect(await store.adapters.blobInUse('a'.repeat(64))).toBe(true);
    expect((await store.adapters.insertNext(version('acme', 'support'), null))!.version).toBe(3);
    expect((await store.adapters.versions('acme', 'support')).map((r) => r.version)).toEqual([1, 3]);
    expect((await store.adapters.listFor(['acme'])).length).toBe(2);
    expect((await store.adapters.listAll()).map((r) => `${r.owner}/${r.name}@${r.version}`)).toEqual(['/copa@1', 'acme/support@1', 'acme/support@3']);
    expect((await store.adapters.markOwnerDeleted('acme')).length).toBe(2);
    expect(await store.adapters.listFor(['acme'])).toEqual([]);
  });

  it("inserts a tenant's adapter only while that tenant exists under the owner's name", async () => {
    const store = await open(await newDatabase());
    const first = (await store.tenants.create('owner', 1, 1))!;
    expect((await store.adapters.insertNext(version('owner', 'x'), first.id))!.version).toBe(1);
    expect(await store.adapters.insertNext(version('owner', 'x'), 9999)).toBeUndefined(); // no such tenant
    await store.removeTenant('owner');
    expect(await store.adapters.insertNext(version('owner', 'x'), first.id)).toBeUndefined(); // deleted mid-upload
    const second = (await store.tenants.create('owner', 1, 1))!;
    expect(await store.adapters.insertNext(version('owner', 'x'), first.id)).toBeUndefined(); // the name, not the tenant
    expect(await store.adapters.listFor(['owner'])).toEqual([]); // the new tenant inherits nothing
    expect((await store.adapters.insertNext(version('owner', 'x'), second.id))!.version).toBe(2); // numbers are not reused
  });

  /**
   * One replica deletes a tenant in a transaction that has not committed yet (and clears its usage, as removeTenant
   * does) while another writes for that tenant; returns the other replica's store and what its write gave.
   */
  async function writeDuringDeletion(name: string, write: (other: Store, tenantId: number) => Promise<unknown>) {
    const db = await newDatabase();
    const [a, b] = [await open(db), await open(db)];
    const t = (await a.tenants.create(name, 1, 1))!;
    let written: Promise<unknown> | undefined;
    await a.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('tenants').where('id', '=', t.id).execute();
      written = write(b, t.id); // waits on the tenant's row
      await new Promise((r) => setTimeout(r, 300));
      await trx.deleteFrom('tenant_usage').where('tenant_id', '=', t.id).execute();
    });
    return { other: b, result: await written };
  }

  it.runIf(dialect === 'postgres')('lets a tenant deletion that has not committed yet win over an insert for that tenant', async () => {
    const { other, result } = await writeDuringDeletion('racing', (b, id) => b.adapters.insertNext(version('racing', 'x'), id));
    expect(result).toBeUndefined();
    expect(await other.adapters.listFor(['racing'])).toEqual([]);
  });

  it.runIf(dialect === 'postgres')('drops usage recorded while its tenant is being deleted', async () => {
    const { other } = await writeDuringDeletion('ending', (b, id) => b.usage.record(id, 'copa', 1, 2, 3, 'ann'));
    expect(await other.usage.byTenant()).toEqual([]);
    expect(await other.usage.byUser()).toEqual([]);
  });

  it.runIf(dialect === 'postgres')('removes a tenant once when two replicas delete it at the same moment', async () => {
    const db = await newDatabase();
    const [a, b] = [await open(db), await open(db)];
    await a.tenants.create('twice', 1, 1);
    const results = await Promise.all([a.removeTenant('twice'), b.removeTenant('twice')]);
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
  });

  it('gives two replicas uploading the same adapter at once distinct versions', async () => {
    const db = await newDatabase();
    const [a, b] = [await open(db), await open(db)];
    const rows = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).adapters.insertNext(version('acme', 'race'), null)));
    expect(rows.map((r) => r!.version).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('adds usage exactly when two replicas record at once, and not for a deleted tenant', async () => {
    const db = await newDatabase();
    const [a, b] = [await open(db), await open(db)];
    const t = (await a.tenants.create('busy', 1, 1))!;
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).usage.record(t.id, 'copa', 1, 3, 5)));
    await a.usage.record(OPERATOR_ID, 'base', 1, 1, 1);
    await a.usage.record(9999, 'base', 1, 1, 1); // no such tenant
    expect(await b.usage.byTenant()).toEqual([{ tenant: 'busy', requests: 40, prompt_tokens: 120, completion_tokens: 200 }]);
    expect(await b.usage.byModel()).toEqual([
      { model: 'base', requests: 1, prompt_tokens: 1, completion_tokens: 1 },
      { model: 'copa', requests: 40, prompt_tokens: 120, completion_tokens: 200 },
    ]);
  });

  it('adds usage per end user beside the tenant totals, exactly across replicas', async () => {
    const db = await newDatabase();
    const [a, b] = [await open(db), await open(db)];
    const t = (await a.tenants.create('users', 1, 1))!;
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).usage.record(t.id, 'copa', 1, 2, 3, i % 4 ? 'ann' : 'bob')));
    await a.usage.record(t.id, 'copa', 1, 1, 1); // no user: the tenant's totals only
    expect(await b.usage.byUser()).toEqual([
      { tenant: 'users', model: 'copa', user: 'ann', requests: 15, prompt_tokens: 30, completion_tokens: 45 },
      { tenant: 'users', model: 'copa', user: 'bob', requests: 5, prompt_tokens: 10, completion_tokens: 15 },
    ]);
    expect(await b.usage.byTenant()).toEqual([{ tenant: 'users', requests: 21, prompt_tokens: 41, completion_tokens: 61 }]);
    await a.removeTenant('users');
    expect(await b.usage.byUser()).toEqual([]);
  });

  it('removes a tenant with its keys, usage and adapters in one transaction', async () => {
    const store = await open(await newDatabase());
    const t = (await store.tenants.create('doomed', 1, 1))!;
    const key = (await store.keys.create(t.id))!;
    await store.adapters.insertNext(version('doomed', 'a'), t.id);
    await store.usage.record(t.id, 'doomed/a', 1, 1, 1);
    const removed = await store.removeTenant('doomed');
    expect(removed?.tenant.id).toBe(t.id);
    expect(removed?.adapters.map((r) => r.name)).toEqual(['a']);
    expect(await store.keys.tenantForKey(key.key)).toBeUndefined();
    expect(await store.usage.byModel()).toEqual([]);
    expect(await store.adapters.listFor(['doomed'])).toEqual([]);
    expect(await store.removeTenant('doomed')).toBeUndefined();
  });

  it('rolls a failed transaction back entirely', async () => {
    const store = await open(await newDatabase());
    await expect(
      store.db.transaction().execute(async (trx) => {
        await trx.insertInto('tenants').values({ name: 'half', rpm: 1, tpm: 1, created: 0 }).execute();
        await trx.insertInto('tenants').values({ name: 'half', rpm: 1, tpm: 1, created: 0 }).execute(); // unique name
      }),
    ).rejects.toThrow();
    expect(await store.tenants.byName('half')).toBeUndefined();
  });

  // A SQLite file serves one gateway, whose windows are in its memory: nothing to share.
  it.runIf(dialect === 'postgres')('shares rate-limit windows between two replicas: the limit holds for the sum, with Retry-After', async () => {
    const db = await newDatabase();
    const [a, b] = [new RateLimiter((await open(db)).limiterConnection), new RateLimiter((await open(db)).limiterConnection)];
    const limits = { rpm: 5, tpm: 1000 };
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).admit(7, limits, { requests: 1, tokens: 10 })));
    const admitted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(admitted.length).toBeLessThanOrEqual(5);
    expect(admitted.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.reason).toBeInstanceOf(ApiError);
      expect((r.reason as ApiError).status).toBe(429);
      expect(Number((r.reason as ApiError).headers?.['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    // Sequentially the count is exact: what was admitted plus what fits is the limit.
    let more = 0;
    while (more < 10) {
      try {
        await a.admit(7, limits, { requests: 1, tokens: 10 });
        more++;
      } catch {
        break;
      }
    }
    expect(admitted.length + more).toBe(5);
    await expect(b.admit(7, limits, { requests: 1, tokens: 10 })).rejects.toMatchObject({ status: 429 });
  });

  it('reserves tokens at admission, settles them to what was used, refunds the gateway\'s failures', async () => {
    const db = await newDatabase();
    // Two limiters on one PostgreSQL stand for two replicas; on SQLite both names are one gateway's limiter.
    const a = new RateLimiter((await open(db)).limiterConnection);
    const b = dialect === 'postgres' ? new RateLimiter((await open(db)).limiterConnection) : a;
    const limits = { rpm: 100, tpm: 100 };
    const first = await a.admit(8, limits, { requests: 1, tokens: 60 });
    await expect(b.admit(8, limits, { requests: 1, tokens: 60 })).rejects.toMatchObject({ status: 429 }); // 60 reserved on a
    await first.settle(20);
    const second = await b.admit(8, limits, { requests: 1, tokens: 60 }); // 20 used + 60 reserved
    await expect(a.admit(8, limits, { requests: 1, tokens: 30 })).rejects.toMatchObject({ status: 429 });
    await second.refund();
    await second.refund(); // once only
    await a.admit(8, limits, { requests: 1, tokens: 80 }); // 20 + 80
    await expect(a.admit(8, limits, { requests: 1, tokens: 101 })).rejects.toMatchObject({ status: 429, param: 'max_tokens' });
    await a.forget(8);
    await b.admit(8, limits, { requests: 1, tokens: 100 });
  });
});

// Two gateway replicas (separate processes) on one PostgreSQL and one shared data folder, in front of two
// engine workers: a tenant's requests alternate between the replicas, the rate limit holds for their sum,
// usage adds up to what was sent, an adapter uploaded through one replica is served by the other, and a
// replica killed with SIGKILL mid-stream fails only its own in-flight requests and leaves nothing half-written.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { EngineClient } from '../src/workers/client.js';
import { loadEngineService } from '../src/workers/proto.js';
import { type EngineWorker, adaptersDirect, loadDirect, startWorker } from './helpers/engine.js';
import { postJson, readSse, tenantClient } from './helpers/gateway.js';
import { REPO_ROOT } from './helpers/paths.js';
import { freshDatabase } from './helpers/postgres.js';
import { type Replica, startReplica } from './helpers/replica.js';
import { until } from './helpers/wait.js';

const tiny = inject('tinyDir');
const model = join(tiny, 'model');
const SLOTS = [4, 6]; // different on purpose: each replica must learn each worker's own from its Health reply
let workers: EngineWorker[] = [];
let a: Replica;
let b: Replica;
let dbUrl: string;
const dataDir = mkdtempSync(join(tmpdir(), 'para-replicas-'));

const replicaArgs = () => ['--db', dbUrl, '--data-dir', dataDir, '--health-interval-ms', '300', '--adapter-sweep-ms', '500', '--backbone', 'tiny', ...workers.flatMap((w) => ['--worker', w.address])];

async function waitHealthy(replica: Replica) {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const r = await fetch(`${replica.url}/readyz`);
    const body = (await r.json()) as { workers: { healthy: number } };
    if (r.status === 200 && body.workers.healthy === workers.length) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`replica ${replica.url} never saw both workers healthy`);
}

beforeAll(async () => {
  workers = await Promise.all(SLOTS.map((slots) => startWorker({ model, slots, maxLen: 2048 })));
  dbUrl = await freshDatabase(inject('postgresUrl'), 'replicas');
  // Started together: the migrations run once, under the migrator's lock.
  [a, b] = await Promise.all([startReplica(replicaArgs()), startReplica(replicaArgs())]);
  await Promise.all([waitHealthy(a), waitHealthy(b)]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all(workers.map((w) => w.stop()));
  rmSync(dataDir, { recursive: true, force: true });
});

const ask = (replica: Replica, key: string, extra: object = {}) =>
  postJson(replica.url, '/v1/completions', key, { model: 'base', prompt: 'the cat', max_tokens: 4, temperature: 0, ...extra });

describe('two replicas on one PostgreSQL', () => {
  it('learns each worker\'s slots from its Health reply', async () => {
    const overview = (await a.admin.overview()).workers;
    expect(overview.map((w) => w.address)).toEqual(workers.map((w) => w.address));
    expect(overview.map((w) => w.slots)).toEqual(SLOTS); // from Health
    expect(overview.map((w) => w.max_context)).toEqual([2048, 2048]);
    expect(overview.map((w) => w.free_slots)).toEqual(SLOTS); // from Stats, all free while idle
  });

  it('enforces the requests per minute on the sum of both replicas, and counts usage exactly', async () => {
    await a.admin.tenants.create({ name: 'shared', rpm: 10, tpm: 1_000_000 });
    const key = (await b.admin.keys.create('shared')).key; // a key made on B works on A
    const replies = [];
    for (let i = 0; i < 16; i++) replies.push(await ask(i % 2 ? b : a, key));
    const statuses = replies.map((r) => r.status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(200)); // 5 on each replica
    expect(statuses.slice(10)).toEqual(Array(6).fill(429)); // not 10 more on the other one
    for (const r of replies.slice(10)) expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const ok = replies.filter((r) => r.status === 200);
    const sent = {
      requests: ok.length,
      prompt_tokens: ok.reduce((s, r) => s + r.body.usage.prompt_tokens, 0),
      completion_tokens: ok.reduce((s, r) => s + r.body.usage.completion_tokens, 0),
    };
    expect(sent.completion_tokens).toBe(40);
    for (const replica of [a, b]) expect((await replica.admin.usage()).find((u) => u.tenant === 'shared')).toEqual({ tenant: 'shared', ...sent });
  });

  it('holds the limit when both replicas are asked at once', async () => {
    await b.admin.tenants.create({ name: 'burst', rpm: 12, tpm: 1_000_000 });
    const key = (await a.admin.keys.create('burst')).key;
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => ask(i % 2 ? b : a, key, { max_tokens: 2 })));
    const ok = replies.filter((r) => r.status === 200).length;
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThanOrEqual(12);
    for (const r of replies) expect([200, 429]).toContain(r.status);
    expect((await a.admin.usage()).find((u) => u.tenant === 'burst')?.requests).toBe(ok);
  });

  it('serves through B an adapter uploaded through A, from blobs named by their SHA-256', async () => {
    await a.admin.tenants.create({ name: 'uploader' });
    const key = (await a.admin.keys.create('uploader')).key;
    const uploaded = await tenantClient(a.url, key).adapters.uploadDirectory(join(tiny, 'adapters', 'beta'), { name: 'helper' });
    expect(uploaded).toMatchObject({ id: 'uploader/helper', version: 1 });
    const weights = readFileSync(join(tiny, 'adapters', 'beta', 'adapter_model.safetensors'));
    expect(uploaded.sha256).toBe(createHash('sha256').update(weights).digest('hex'));
    expect(existsSync(join(dataDir, 'blobs', uploaded.sha256))).toBe(true);
    const chat = { model: 'uploader/helper', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, temperature: 0 };
    const viaB = await postJson(b.url, '/v1/chat/completions', key, chat);
    expect(viaB.status).toBe(200);
    expect(viaB.body.model).toBe('uploader/helper@1');
    const viaA = await postJson(a.url, '/v1/chat/completions', key, chat);
    expect(viaB.body.choices[0].message.content).toBe(viaA.body.choices[0].message.content);
    const bare = await postJson(b.url, '/v1/chat/completions', key, { ...chat, model: 'base' });
    expect(viaB.body.choices[0].message.content).not.toBe(bare.body.choices[0].message.content);
    // Deleted through B: gone for A too, and its blobs with it (no other version uses them).
    await Promise.all(workers.map((w) => loadDirect(w.address, 'direct-beta', join(tiny, 'adapters', 'beta'))));
    const holders = async () => (await Promise.all(workers.map((w) => adaptersDirect(w.address)))).filter((names) => names.includes('uploader/helper@1'));
    expect((await holders()).length).toBeGreaterThan(0);
    await tenantClient(b.url, key).adapters.delete('uploader/helper');
    expect((await postJson(a.url, '/v1/chat/completions', key, chat)).status).toBe(404);
    expect(existsSync(join(dataDir, 'blobs', uploaded.sha256))).toBe(false);
    // And off every worker, also one that only A had pushed it to (A's sweep finds it no longer live), while a
    // name a worker loaded itself stays.
    await until(async () => (await holders()).length === 0, 10_000, 'the deleted version unloaded from every worker');
    for (const w of workers) expect(await adaptersDirect(w.address)).toContain('direct-beta');
  });

  it('fails only the killed replica\'s in-flight requests, and leaves nothing half-written', async () => {
    await a.admin.tenants.create({ name: 'survivor', rpm: 1000, tpm: 10_000_000 });
    const key = (await a.admin.keys.create('survivor')).key;
    const before = (await b.admin.usage()).find((u) => u.tenant === 'shared');
    const stream = (replica: Replica) =>
      fetch(`${replica.url}/v1/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'base', prompt: 'the cat', max_tokens: 400, temperature: 0, stop: [], stream: true }),
      });
    const onA = await Promise.all([stream(a), stream(a)]);
    const onB = await Promise.all([stream(b), stream(b)]);
    for (const r of [...onA, ...onB]) expect(r.status).toBe(200);
    // A's streams have started delivering tokens; an upload to A is in flight too.
    const firstChunk = await onA[0]!.body!.getReader().read();
    expect(firstChunk.done).toBe(false);
    const upload = tenantClient(a.url, key).adapters.uploadDirectory(join(tiny, 'adapters', 'gamma'), { name: 'mid-kill' }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 30));
    a.process.kill('SIGKILL');
    await a.exited;

    // A's in-flight requests fail (their connections drop without the end of the stream)...
    for (const r of onA.slice(1)) await expect(r.text()).rejects.toThrow();
    await upload;
    // ...B's finish whole.
    for (const r of onB) {
      const sse = await readSse(r);
      expect(sse.done).toBe(true);
      expect(sse.errors).toEqual([]);
      expect(sse.chunks.flatMap((c) => c.choices).filter((c) => c.text).length).toBeGreaterThan(0);
    }
    expect((await ask(b, key)).status).toBe(200);

    // Nothing committed is lost: the earlier tenants and their usage are all still there.
    expect((await b.admin.usage()).find((u) => u.tenant === 'shared')).toEqual(before);
    expect((await b.admin.tenants.list()).map((t) => t.name)).toEqual(expect.arrayContaining(['shared', 'burst', 'uploader', 'survivor']));
    // Nothing is half-written: every live version's blobs exist and hold what their names say; the upload cut
    // off by the kill either finished whole or left no row. Temporary files may remain (cleared after an hour).
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const rows = (await db.query('SELECT owner, name, sha256, config_sha256 FROM adapters WHERE deleted = 0')).rows as { sha256: string; config_sha256: string }[];
      for (const row of rows) {
        for (const blob of [row.sha256, row.config_sha256]) {
          expect(createHash('sha256').update(readFileSync(join(dataDir, 'blobs', blob))).digest('hex')).toBe(blob);
        }
      }
    } finally {
      await db.end();
    }
    const names = readdirSync(join(dataDir, 'blobs'));
    expect(names.every((n) => /^[0-9a-f]{64}$/.test(n) || n.startsWith('.tmp-'))).toBe(true);

    // The workers stop A's orphaned requests (its gRPC streams were cut) and go back to idle.
    const end = Date.now() + 20_000;
    for (const w of workers) {
      const client = new EngineClient(w.address, loadEngineService(`${REPO_ROOT}proto/engine.proto`));
      try {
        while ((await client.stats(5000)).running > 0) {
          if (Date.now() > end) throw new Error(`worker ${w.address} still runs A's requests`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        client.close();
      }
    }

    // A replacement replica on the same database and folder starts and serves the same state.
    a = await startReplica(replicaArgs());
    await waitHealthy(a);
    expect((await a.admin.usage()).find((u) => u.tenant === 'shared')).toEqual(before);
    expect((await ask(a, key)).status).toBe(200);
  });
});

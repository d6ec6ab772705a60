// A database and data folder made before blobs and the migrator (schema version 1: an adapter version is a
// folder, pending rows marked 2) keep working: the migrations add what is new, old versions are served from
// their folders, a version left pending by a crash stays invisible, and new uploads become blobs.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { startGateway } from '../src/app.js';
import { ParaClient } from '../src/sdk/index.js';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { OPERATOR_KEY, postJson, tenantClient } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const dir = mkdtempSync(join(tmpdir(), 'para-upgrade-'));
const KEY = 'sk-para-an-old-key-made-before-the-migrator';
let worker: EngineWorker;

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
});
afterAll(async () => {
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('serves a version-1 database: old folders, old keys, old usage; new uploads as blobs', async () => {
  const file = join(dir, 'gateway.db');
  const data = join(dir, 'data');
  const v1 = join(data, 'adapters', 'acme', 'helper', '1');
  cpSync(join(tiny, 'adapters', 'beta'), v1, { recursive: true });
  const weights = readFileSync(join(v1, 'adapter_model.safetensors'));
  const old = new Database(file);
  // The schema as the gateway wrote it before the migrator (PRAGMA user_version 1).
  old.exec(`
    CREATE TABLE tenants (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, rpm INTEGER NOT NULL, tpm INTEGER NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE adapters (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL,
      bytes INTEGER NOT NULL, parameters INTEGER NOT NULL, dir TEXT NOT NULL, created INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, UNIQUE (owner, name, version));
    CREATE TABLE tenant_usage (tenant_id INTEGER NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
      completion_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant_id, model));
    PRAGMA user_version = 1;`);
  old.prepare('INSERT INTO tenants (id, name, rpm, tpm, created) VALUES (1, ?, 100, 100000, 0)').run('acme');
  old.prepare('INSERT INTO api_keys VALUES (?, 1, ?, ?, 0)').run('key_old', createHash('sha256').update(KEY).digest('hex'), KEY.slice(0, 12));
  const row = old.prepare('INSERT INTO adapters (owner, name, version, sha256, bytes, parameters, dir, created, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)');
  row.run('acme', 'helper', 1, createHash('sha256').update(weights).digest('hex'), weights.length, 10, v1, 0);
  row.run('acme', 'helper', 2, 'f'.repeat(64), 1, 1, join(data, 'adapters', 'acme', 'helper', '2'), 2); // pending when it stopped
  old.prepare('INSERT INTO tenant_usage VALUES (1, ?, 3, 30, 40)').run('acme/helper');
  old.close();

  const gw = await startGateway({ port: 0, db: file, dataDir: data, operatorKey: OPERATOR_KEY, workers: [worker.address], logLevel: 'warn', healthIntervalMs: 300 });
  try {
    await gw.pool.waitForHealthy(30_000);
    const admin = new ParaClient({ baseUrl: gw.url, apiKey: OPERATOR_KEY });
    expect(await admin.usage()).toEqual([{ tenant: 'acme', requests: 3, prompt_tokens: 30, completion_tokens: 40 }]);
    const tenant = tenantClient(gw.url, KEY);
    expect((await tenant.adapters.list()).map((a) => [a.id, a.versions])).toEqual([['acme/helper', [1]]]); // 2 was pending
    const chat = (model: string) => postJson(gw.url, '/v1/chat/completions', KEY, { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, temperature: 0 });
    const old1 = await chat('acme/helper@1');
    expect(old1.status).toBe(200);
    // A new upload of the same files: version 3 (2 is never reused), stored as blobs, the same output.
    const v3 = await tenant.adapters.uploadDirectory(join(tiny, 'adapters', 'beta'), { name: 'helper' });
    expect(v3.version).toBe(3);
    expect(existsSync(join(data, 'blobs', v3.sha256))).toBe(true);
    expect((await chat('acme/helper@3')).body.choices[0].message.content).toBe(old1.body.choices[0].message.content);
    // Deleting the folder-stored version removes its folder; the blob-stored one is untouched.
    await tenant.adapters.delete('acme/helper', { version: 1 });
    expect(existsSync(v1)).toBe(false);
    expect((await chat('acme/helper')).status).toBe(200);
  } finally {
    await gw.close();
  }
});

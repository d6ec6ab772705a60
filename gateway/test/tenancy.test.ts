// Tenants, keys, isolation, rate limits, usage and adapter versions, against a real tiny engine.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { ParaApiError, type ParaClient } from '../src/sdk/index.js';
import { type EngineWorker, generateDirect, loadDirect, startWorker } from './helpers/engine.js';
import { OPERATOR_KEY, type TestGateway, jsonOf, operatorFetch, postJson, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const adapterDir = (name: string) => join(tiny, 'adapters', name);
const messages = [{ role: 'user', content: 'the cat sat on the mat' }];
let worker: EngineWorker;
let gw: TestGateway;
let acmeKey: string;
let globexKey: string;
let acme: ParaClient;
let globex: ParaClient;

/** Greedy reference output of an adapter directory, asked of the engine directly. */
async function reference(adapter: string, maxTokens = 8) {
  return (await generateDirect(worker.address, adapter, { chat: { messages } }, { max_tokens: maxTokens, temperature: 0 })).text;
}

async function chat(key: string, model: string, maxTokens = 8) {
  return postJson(gw.url, '/v1/chat/completions', key, { model, messages, max_tokens: maxTokens, temperature: 0 });
}

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  gw = await startTestGateway([worker.address]);
  acmeKey = await tenantWithKey(gw.admin, 'acme');
  globexKey = await tenantWithKey(gw.admin, 'globex');
  acme = tenantClient(gw.url, acmeKey);
  globex = tenantClient(gw.url, globexKey);
  // Same adapter name, different weights: each tenant must get its own.
  await acme.adapters.uploadDirectory(adapterDir('alpha'), { name: 'support' });
  await globex.adapters.uploadDirectory(adapterDir('gamma'), { name: 'support' });
  await gw.admin.adapters.uploadDirectory(adapterDir('beta'), { name: 'common', shared: true });
  for (const name of ['alpha', 'beta', 'gamma']) await loadDirect(worker.address, `direct-${name}`, adapterDir(name));
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

describe('isolation between tenants', () => {
  it('serves each tenant its own adapter in concurrent requests', async () => {
    const [alpha, gamma, beta] = await Promise.all([reference('direct-alpha'), reference('direct-gamma'), reference('direct-beta')]);
    expect(new Set([alpha, gamma, beta]).size).toBe(3);
    const jobs = Array.from({ length: 24 }, (_, i) => {
      const plans: [string, string, string][] = [
        [acmeKey, 'acme/support', alpha],
        [globexKey, 'globex/support', gamma],
        [i % 2 ? acmeKey : globexKey, 'common', beta],
      ];
      const [key, model, expected] = plans[i % 3]!;
      return chat(key, model).then((r) => ({ r, expected }));
    });
    for (const { r, expected } of await Promise.all(jobs)) {
      expect(r.status).toBe(200);
      expect(r.body.choices[0].message.content).toBe(expected);
    }
  });

  it('hides other tenants adapters from listing, use and deletion', async () => {
    expect((await acme.adapters.list()).map((a) => a.id).sort()).toEqual(['acme/support', 'common']);
    expect((await acme.models()).map((m) => m.id).sort()).toEqual(['acme/support', 'base', 'common']);
    const used = await chat(acmeKey, 'globex/support');
    expect(used.status).toBe(404);
    expect(used.body.error).toMatchObject({ type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
    await expect(acme.adapters.get('globex/support')).rejects.toMatchObject({ status: 404 });
    await expect(acme.adapters.delete('globex/support')).rejects.toMatchObject({ status: 404 });
    await expect(acme.adapters.delete('common')).rejects.toMatchObject({ status: 403, type: 'permission_error' });
    // Still there for its owner.
    expect((await globex.adapters.get('globex/support')).versions).toEqual([1]);
    expect((await chat(globexKey, 'globex/support')).status).toBe(200);
    // A tenant cannot upload for another tenant or as shared.
    await expect(acme.adapters.uploadDirectory(adapterDir('beta'), { name: 'x', tenant: 'globex' })).rejects.toMatchObject({ status: 403 });
    await expect(acme.adapters.uploadDirectory(adapterDir('beta'), { name: 'x', shared: true })).rejects.toMatchObject({ status: 403 });
  });

  it('lets the operator see and use every adapter', async () => {
    expect((await gw.admin.adapters.list()).map((a) => a.id).sort()).toEqual(['acme/support', 'common', 'globex/support']);
    expect((await chat(OPERATOR_KEY, 'globex/support')).body.choices[0].message.content).toBe(await reference('direct-gamma'));
  });
});

describe('keys', () => {
  it('refuses missing, wrong and revoked keys with 401, tenant keys on admin routes with 403', async () => {
    const missing = await postJson(gw.url, '/v1/chat/completions', undefined, { model: 'base', messages });
    expect(missing.status).toBe(401);
    expect(missing.body.error.type).toBe('authentication_error');
    const wrong = await chat('sk-para-not-a-key', 'base');
    expect(wrong.status).toBe(401);
    const models = await fetch(`${gw.url}/v1/models`, { headers: { authorization: 'Basic abc' } });
    expect(models.status).toBe(401);
    const admin = await fetch(`${gw.url}/admin/v1/tenants`, { headers: { authorization: `Bearer ${acmeKey}` } });
    expect(admin.status).toBe(403);
    expect((await jsonOf(admin)).error.type).toBe('permission_error');

    const extra = await gw.admin.keys.create('acme');
    expect(extra.key).toMatch(/^sk-para-/);
    expect((await chat(extra.key, 'base', 2)).status).toBe(200);
    const listed = await gw.admin.keys.list('acme');
    expect(listed.map((k) => k.id)).toContain(extra.id);
    expect(JSON.stringify(listed)).not.toContain(extra.key); // only prefixes are kept
    await gw.admin.keys.delete(extra.id);
    expect((await chat(extra.key, 'base', 2)).status).toBe(401);
    expect((await chat(acmeKey, 'base', 2)).status).toBe(200);
  });
});

describe('rate limits and usage', () => {
  it('answers 429 over the requests per minute, per tenant', async () => {
    const key = await tenantWithKey(gw.admin, 'slow', { rpm: 3 });
    for (let i = 0; i < 3; i++) expect((await chat(key, 'base', 2)).status).toBe(200);
    const limited = await chat(key, 'base', 2);
    expect(limited.status).toBe(429);
    expect(limited.body.error.type).toBe('rate_limit_error');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Streamed requests are limited too, before any event is sent.
    const streamed = await postJson(gw.url, '/v1/chat/completions', key, { model: 'base', messages, max_tokens: 2, stream: true });
    expect(streamed.status).toBe(429);
    expect((await chat(acmeKey, 'base', 2)).status).toBe(200); // others are unaffected
  });

  it('answers 429 over the tokens per minute', async () => {
    const key = await tenantWithKey(gw.admin, 'thrifty', { tpm: 20 });
    expect((await chat(key, 'base', 4)).status).toBe(200); // this one spends the budget (prompt + completion > 20)
    const limited = await chat(key, 'base', 4);
    expect(limited.status).toBe(429);
    expect(limited.body.error.message).toContain('tokens per minute');
  });

  it('accounts usage per tenant in the database', async () => {
    const key = await tenantWithKey(gw.admin, 'counted');
    let prompt = 0;
    let completion = 0;
    for (const maxTokens of [2, 3, 4]) {
      const r = await chat(key, 'base', maxTokens);
      prompt += r.body.usage.prompt_tokens;
      completion += r.body.usage.completion_tokens;
    }
    const row = (await gw.admin.usage()).find((u) => u.tenant === 'counted');
    expect(row).toEqual({ tenant: 'counted', requests: 3, prompt_tokens: prompt, completion_tokens: completion });
    const overview = await gw.admin.overview();
    expect(overview.tenants.find((t) => t.name === 'counted')).toMatchObject({ requests: 3, completion_tokens: completion });
  });
});

describe('adapter versions', () => {
  it('serves the latest version by default and older ones by @N, and deletes versions', async () => {
    const v2 = await acme.adapters.uploadDirectory(adapterDir('beta'), { name: 'support' });
    expect(v2).toMatchObject({ id: 'acme/support', version: 2, versions: [1, 2] });
    expect(v2.sha256).toMatch(/^[0-9a-f]{64}$/);
    const [alpha, beta] = await Promise.all([reference('direct-alpha'), reference('direct-beta')]);
    const latest = await chat(acmeKey, 'acme/support');
    expect(latest.body.model).toBe('acme/support@2');
    expect(latest.body.choices[0].message.content).toBe(beta);
    expect((await chat(acmeKey, 'acme/support@1')).body.choices[0].message.content).toBe(alpha);

    expect(await acme.adapters.delete('acme/support', { version: 1 })).toEqual({ deleted: true, id: 'acme/support' });
    expect((await chat(acmeKey, 'acme/support@1')).status).toBe(404);
    expect((await acme.adapters.get('acme/support')).versions).toEqual([2]);

    // A new upload never reuses a deleted version number.
    const v3 = await acme.adapters.uploadDirectory(adapterDir('gamma'), { name: 'support' });
    expect(v3.version).toBe(3);
    await acme.adapters.delete('acme/support');
    expect((await chat(acmeKey, 'acme/support')).status).toBe(404);
    await expect(acme.adapters.get('acme/support')).rejects.toBeInstanceOf(ParaApiError);
  });

  it('unloads from the workers the versions deleted behind this gateway (another replica), and nothing else', async () => {
    await acme.adapters.uploadDirectory(adapterDir('alpha'), { name: 'swept' });
    expect((await chat(acmeKey, 'acme/swept', 2)).status).toBe(200); // pushed to the worker as acme/swept@1
    const held = async () => (await gw.gateway.pool.workers[0]!.client.listAdapters(5000)).map((a) => a.name);
    expect(await held()).toContain('acme/swept@1');
    // What another replica's DELETE does to the shared database; this gateway's workers are not told.
    expect(await gw.gateway.store.adapters.markDeleted('acme', 'swept', 1)).toHaveLength(1);
    expect(await held()).toContain('acme/swept@1');
    const before = await held();
    expect(await gw.gateway.registry.sweep()).toBe(1);
    expect(await held()).toEqual(before.filter((name) => name !== 'acme/swept@1')); // live versions and direct- loads stay
    expect(await held()).toContain('direct-alpha');
    expect(await gw.gateway.registry.sweep()).toBe(0);
  });

  it('removes a deleted tenant with its keys and adapters', async () => {
    const key = await tenantWithKey(gw.admin, 'leaving');
    await tenantClient(gw.url, key).adapters.uploadDirectory(adapterDir('alpha'), { name: 'a' });
    expect((await chat(key, 'leaving/a', 2)).status).toBe(200);
    const metrics = async () => (await operatorFetch(gw.url, '/metrics')).text();
    expect(await metrics()).toContain('tenant="leaving",model="leaving/a"');
    await gw.admin.tenants.delete('leaving');
    // its series go with it (a deleted tenant's or adapter's name must not stay in /metrics for ever)
    expect(await metrics()).not.toContain('"leaving');
    expect((await chat(key, 'leaving/a', 2)).status).toBe(401);
    expect((await gw.admin.adapters.list()).map((a) => a.id)).not.toContain('leaving/a');
    expect((await chat(OPERATOR_KEY, 'leaving/a', 2)).status).toBe(404);
  });
});

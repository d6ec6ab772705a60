// The admin client against a real gateway, plus the operations routes, the OpenAPI document, the dashboard's
// static files, persistence across restarts, and the command line.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseCli } from '../src/argv.js';
import { startGateway } from '../src/app.js';
import { ParaApiError, ParaClient } from '../src/sdk/index.js';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { OPERATOR_KEY, type TestGateway, jsonOf, postJson, startTestGateway, tenantClient, operatorFetch } from './helpers/gateway.js';

const tiny = inject('tinyDir');
let worker: EngineWorker;
let gw: TestGateway;
let dashboardDir: string;

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  dashboardDir = mkdtempSync(join(tmpdir(), 'para-dashboard-'));
  writeFileSync(join(dashboardDir, 'index.html'), '<!doctype html><title>PARA dashboard</title>');
  gw = await startTestGateway([worker.address], { dashboardDir, backbone: 'tiny-llama' });
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
  rmSync(dashboardDir, { recursive: true, force: true });
});

describe('admin client', () => {
  it('manages tenants, keys, adapters and reads usage and the overview', async () => {
    const admin = gw.admin;
    const tenant = await admin.tenants.create({ name: 'acme', rpm: 100, tpm: 5000 });
    expect(tenant).toMatchObject({ name: 'acme', rpm: 100, tpm: 5000 });
    await expect(admin.tenants.create({ name: 'acme' })).rejects.toMatchObject({ status: 409 });
    await expect(admin.tenants.create({ name: 'Not Valid' })).rejects.toMatchObject({ status: 400, param: 'name' });
    expect((await admin.tenants.list()).map((t) => t.name)).toEqual(['acme']);

    const key = await admin.keys.create('acme');
    expect(key.prefix).toBe(key.key.slice(0, key.prefix.length));
    expect((await admin.keys.list('acme')).map((k) => k.id)).toEqual([key.id]);
    await expect(admin.keys.create('nobody')).rejects.toMatchObject({ status: 404 });

    const shared = await admin.adapters.uploadDirectory(join(tiny, 'adapters/alpha'), { name: 'helper', shared: true });
    expect(shared).toMatchObject({ id: 'helper', owner: null, version: 1, versions: [1] });
    expect(shared.parameters).toBeGreaterThan(0);
    const owned = await admin.adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'support', tenant: 'acme' });
    expect(owned).toMatchObject({ id: 'acme/support', owner: 'acme' });
    await expect(admin.adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'orphan' })).rejects.toMatchObject({ status: 400, param: 'tenant' });
    expect((await admin.adapters.get('acme/support')).sha256).toBe(owned.sha256);

    const tenantApi = tenantClient(gw.url, key.key);
    expect((await tenantApi.models()).map((m) => m.id).sort()).toEqual(['acme/support', 'base', 'helper']);
    const reply = await postJson(gw.url, '/v1/completions', key.key, { model: 'acme/support', prompt: 'the cat', max_tokens: 3 });
    expect(reply.status).toBe(200);

    expect(await admin.usage()).toEqual([{ tenant: 'acme', requests: 1, prompt_tokens: reply.body.usage.prompt_tokens, completion_tokens: reply.body.usage.completion_tokens }]);
    const overview = await admin.overview();
    expect(overview.backbone).toBe('tiny-llama');
    expect(overview.tenants).toEqual([{ name: 'acme', adapters: 1, requests: 1, prompt_tokens: reply.body.usage.prompt_tokens, completion_tokens: reply.body.usage.completion_tokens }]);
    expect(overview.adapters).toContainEqual({ id: 'acme/support', owner: 'acme', versions: 1, requests: 1, completion_tokens: reply.body.usage.completion_tokens });
    expect(overview.adapters).toContainEqual({ id: 'helper', owner: null, versions: 1, requests: 0, completion_tokens: 0 });
    expect(overview.workers).toEqual([expect.objectContaining({ address: worker.address, healthy: true, inflight: 0 })]);
    expect(overview.series).toHaveLength(120);
    expect(overview.series.reduce((a, s) => a + s.requests, 0)).toBe(1);
    expect(overview.latency_ms.p50).toBeGreaterThan(0);
    expect(overview.quality.metric).toBe('dev');
    expect(overview.quality.rows).toContainEqual(expect.objectContaining({ task: 'copa', method: 'para' }));
    // the committed study's tasks in results.md's order
    expect([...new Set(overview.quality.rows.map((r) => r.task))]).toEqual(['copa', 'boolq', 'squad', 'gsm8k', 'spider']);

    expect(await admin.adapters.delete('helper')).toEqual({ deleted: true, id: 'helper' });
    await admin.keys.delete(key.id);
    await expect(tenantApi.models()).rejects.toBeInstanceOf(ParaApiError);
    expect(await admin.tenants.delete('acme')).toEqual({ deleted: true, name: 'acme' });
    expect(await admin.tenants.list()).toEqual([]);
    await expect(admin.tenants.delete('acme')).rejects.toMatchObject({ status: 404 });
  });

  it('reports errors with the status, type and code of the reply', async () => {
    const stranger = new ParaClient({ baseUrl: gw.url, apiKey: 'sk-para-wrong' });
    const err = await stranger.tenants.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParaApiError);
    expect(err).toMatchObject({ status: 401, type: 'authentication_error' });
  });
});

describe('operations routes', () => {
  it('serves health and the OpenAPI document without a key, metrics with the operator key', async () => {
    expect(await jsonOf(await fetch(`${gw.url}/healthz`))).toEqual({ status: 'ok', workers: { healthy: 1, total: 1 } });
    const metrics = await operatorFetch(gw.url, '/metrics');
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await metrics.text();
    for (const name of ['para_requests_total', 'para_tokens_total', 'para_request_duration_seconds_bucket', 'para_time_to_first_token_seconds_bucket', 'para_inflight_requests', 'para_worker_up', 'process_cpu_seconds_total']) {
      expect(text).toContain(name);
    }
    const doc = await jsonOf(await fetch(`${gw.url}/openapi.json`));
    expect(doc.openapi).toMatch(/^3\./);
    for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/models', '/v1/adapters', '/v1/adapters/{tenant}/{name}', '/admin/v1/tenants', '/admin/v1/overview', '/healthz']) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    const chatBody = doc.paths['/v1/chat/completions'].post.requestBody.content['application/json'].schema;
    expect(chatBody.required).toEqual(expect.arrayContaining(['model', 'messages']));
    expect(doc.components.securitySchemes.bearer.scheme).toBe('bearer');
  });

  it('documents what the routes really do: 409 on a taken name, the upload form, n up to its enforced maximum', async () => {
    const doc = await jsonOf(await fetch(`${gw.url}/openapi.json`));
    expect(Object.keys(doc.paths['/admin/v1/tenants'].post.responses)).toContain('409');
    const form = doc.paths['/v1/adapters'].post.requestBody.content['multipart/form-data'].schema;
    expect(form.required).toEqual(['name', 'config', 'weights']);
    expect(form.properties.weights.format).toBe('binary');
    for (const path of ['/v1/chat/completions', '/v1/completions']) {
      const post = doc.paths[path].post;
      expect(post.requestBody.content['application/json'].schema.properties.n.maximum).toBe(8); // what the gateway enforces
      expect(Object.keys(post.responses['200'].content).sort()).toEqual(['application/json', 'text/event-stream']);
    }
    expect(doc.paths['/admin/v1/tenants/{name}'].patch).toBeDefined();
    expect(doc.paths['/metrics'].get.security).toEqual([{ bearer: [] }]);
  });

  it('serves the dashboard files under /dashboard/', async () => {
    const page = await fetch(`${gw.url}/dashboard/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('PARA dashboard');
    const redirect = await fetch(`${gw.url}/dashboard`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
  });
});

describe('persistence and start-up', () => {
  it('keeps tenants, keys and adapters across restarts; shared adapters are registered once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'para-gateway-persist-'));
    const options = {
      port: 0, workers: [worker.address], db: join(dir, 'gateway.db'), dataDir: join(dir, 'data'), operatorKey: OPERATOR_KEY,
      logLevel: 'warn' as const, sharedAdapters: [{ name: 'copilot', dir: join(tiny, 'adapters/gamma') }],
    };
    try {
      const first = await startGateway(options);
      const admin = new ParaClient({ baseUrl: first.url, apiKey: OPERATOR_KEY });
      await admin.tenants.create({ name: 'keep' });
      const key = (await admin.keys.create('keep')).key;
      await tenantClient(first.url, key).adapters.uploadDirectory(join(tiny, 'adapters/alpha'), { name: 'mine' });
      await first.close();

      const second = await startGateway(options);
      try {
        const models = (await tenantClient(second.url, key).models()).map((m) => m.id).sort();
        expect(models).toEqual(['base', 'copilot', 'keep/mine']);
        expect((await tenantClient(second.url, key).adapters.get('copilot')).versions).toEqual([1]);
        expect((await postJson(second.url, '/v1/completions', key, { model: 'keep/mine', prompt: 'a', max_tokens: 2 })).status).toBe(200);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses invalid options with a clear message', async () => {
    await expect(startGateway({ workers: ['not an address'] })).rejects.toThrow(/workers\.0: workers are host:port/);
    await expect(startGateway({ operatorKey: 'short' })).rejects.toThrow(/operator key needs at least 16/);
    await expect(startGateway({ operatorKey: 'replace-with-openssl-rand-hex-24' })).rejects.toThrow(/still the placeholder/);
  });

  it('parses the command line', () => {
    expect(parseCli(['--help'])).toEqual({ help: true });
    const parsed = parseCli(['--port', '9000', '--worker', 'a:1', '--worker', 'b:2', '--shared-adapter', 'copa=/x/copa', '--db', 'g.db'], { PARA_OPERATOR_KEY: 'k'.repeat(20) });
    expect(parsed).toEqual({
      help: false,
      options: { port: 9000, workers: ['a:1', 'b:2'], db: 'g.db', operatorKey: 'k'.repeat(20), sharedAdapters: [{ name: 'copa', dir: '/x/copa' }] },
    });
    expect(() => parseCli(['--port', 'abc'])).toThrow(/whole number/);
    expect(() => parseCli(['--shared-adapter', 'nodir'])).toThrow(/NAME=DIR/);
    expect(() => parseCli(['--bogus'])).toThrow();
  });
});

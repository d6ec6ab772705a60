// Each way a hostile tenant broke things, one test each: strings that are not well-formed Unicode, integers
// that would wrap in the engine's uint32 fields, names with a dot, a truncated multipart body, an adapter
// config a worker chokes on, weights far out of bounds, tenant names on the unauthenticated surface, and
// what a crashed upload left in the staging folder. Every refusal is a 400 naming its field, and afterwards
// the worker is still up and serving.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { type TestGateway, jsonOf, operatorFetch, postJson, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const alphaConfig = readFileSync(join(tiny, 'adapters/alpha/adapter_config.json'));
const alphaWeights = readFileSync(join(tiny, 'adapters/alpha/adapter_model.safetensors'));
const LONE = '\ud800';
let worker: EngineWorker;
let gw: TestGateway;
let key: string;

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  gw = await startTestGateway([worker.address]);
  key = await tenantWithKey(gw.admin, 'acme');
  await tenantClient(gw.url, key).adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'private-helper' });
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

/** The worker was never taken out, and a normal request still works. */
async function stillServing() {
  expect(gw.gateway.pool.workers[0]!.healthy).toBe(true);
  const r = await postJson(gw.url, '/v1/chat/completions', key, { model: 'acme/private-helper', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  expect(r.status).toBe(200);
}

/** Weights whose every float is `value`. */
function weightsOf(value: number): Buffer {
  const weights = Buffer.from(alphaWeights);
  const start = 8 + Number(weights.readBigUInt64LE(0));
  for (let at = start; at + 4 <= weights.length; at += 4) weights.writeFloatLE(value, at);
  return weights;
}

async function upload(name: string, config: Buffer, weights: Buffer) {
  const form = new FormData();
  form.set('name', name);
  form.set('config', new Blob([config]), 'adapter_config.json');
  form.set('weights', new Blob([weights]), 'adapter_model.safetensors');
  const response = await fetch(`${gw.url}/v1/adapters`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  return { status: response.status, body: await jsonOf(response) };
}

describe('strings that are not well-formed Unicode', () => {
  const chat = (extra: object) => ({ model: 'base', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
  it.each([
    ['a chat message', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: LONE }] }), 'messages.0.content'],
    ['a text part', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: [{ type: 'text', text: `a${LONE}` }] }] }), 'messages.0.content.0.text'],
    ['a stop string', '/v1/chat/completions', chat({ stop: ['x', LONE] }), 'stop.1'],
    ['user', '/v1/chat/completions', chat({ user: LONE }), 'user'],
    ['a message name', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 'hi', name: LONE }] }), 'messages.0.name'],
    ['a completions prompt', '/v1/completions', { model: 'base', prompt: `x${LONE}y`, max_tokens: 2 }, 'prompt'],
    ['one of several prompts', '/v1/completions', { model: 'base', prompt: ['ok', LONE], max_tokens: 2 }, 'prompt.1'],
    ['the model', '/v1/completions', { model: `copa${LONE}`, prompt: 'x', max_tokens: 2 }, 'model'],
    ['a tenant name', '/admin/v1/tenants', { name: LONE }, 'name'],
  ])('refuses a lone surrogate in %s with a 400 naming the field', async (_what, path, body, param) => {
    const apiKey = path.startsWith('/admin') ? 'op-test-key-0123456789abcdef' : key;
    for (const stream of [false, true]) {
      const r = await postJson(gw.url, path, apiKey, path.startsWith('/admin') ? body : { ...body, stream });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_string', param });
    }
    await stillServing();
  });
});

describe('integers the engine would wrap', () => {
  it.each([
    ['max_tokens of 2^32 + 3', { model: 'base', prompt: 'x', max_tokens: 2 ** 32 + 3 }, 'max_tokens'],
    ['a token id of 2^32 + 1', { model: 'base', prompt: [5, 2 ** 32 + 1], max_tokens: 2 }, 'prompt.1'],
    ['a negative token id', { model: 'base', prompt: [[5, -1]], max_tokens: 2 }, 'prompt'],
    ['n over the maximum', { model: 'base', prompt: 'x', max_tokens: 2, n: 9 }, 'n'],
  ])('refuses %s with a 400', async (_what, body, param) => {
    const r = await postJson(gw.url, '/v1/completions', key, body);
    expect(r.status).toBe(400);
    expect(r.body.error.type).toBe('invalid_request_error');
    expect(String(r.body.error.param)).toContain(param);
    await stillServing();
  });

  it('refuses max_tokens that leaves no room in the worker\'s context', async () => {
    const context = gw.gateway.pool.workers[0]!.maxContext;
    expect(context).toBeGreaterThan(0);
    const r = await postJson(gw.url, '/v1/completions', key, { model: 'base', prompt: 'x', max_tokens: context });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param: 'max_tokens', code: 'invalid_value' });
    expect((await postJson(gw.url, '/v1/completions', key, { model: 'base', prompt: 'x', max_tokens: 3 })).status).toBe(200);
  });

  it('refuses max_completion_tokens over the context, naming it', async () => {
    const r = await postJson(gw.url, '/v1/chat/completions', key, { model: 'base', messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 4_294_967_299 });
    expect(r.status).toBe(400);
    expect(r.body.error.param).toBe('max_completion_tokens');
  });

  it('passes a token id outside the vocabulary to the worker, whose refusal is a 400 that takes nothing down', async () => {
    const r = await postJson(gw.url, '/v1/completions', key, { model: 'base', prompt: [5, 1_000_000], max_tokens: 2 });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/token ids/);
    await stillServing();
  });
});

describe('names', () => {
  it('refuses names with a dot for adapters and tenants', async () => {
    const adapter = await upload('my.adapter', alphaConfig, alphaWeights);
    expect(adapter.status).toBe(400);
    expect(adapter.body.error.param).toBe('name');
    const tenant = await gw.admin.tenants.create({ name: 'acme.corp' }).catch((e: unknown) => e);
    expect(tenant).toMatchObject({ status: 400, param: 'name' });
    const model = await postJson(gw.url, '/v1/completions', key, { model: 'acme/my.adapter', prompt: 'x', max_tokens: 2 });
    expect(model.status).toBe(404);
    await stillServing();
  });
});

describe('adapter uploads', () => {
  it('answers a truncated multipart body with 400', async () => {
    const boundary = 'para-boundary';
    const head = `--${boundary}\r\ncontent-disposition: form-data; name="name"\r\n\r\ncut\r\n--${boundary}\r\ncontent-disposition: form-data; name="weights"; filename="w"\r\ncontent-type: application/octet-stream\r\n\r\n`;
    const body = Buffer.concat([Buffer.from(head), alphaWeights.subarray(0, 100)]); // no closing boundary
    const status = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/v1/adapters`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(status.status).toBe(400);
    expect(JSON.parse(status.text).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_multipart' });
    await stillServing();
  });

  it('refuses a config the library would choke on with a clean 400, no exception or path in it', async () => {
    const config = Buffer.from(JSON.stringify({ ...JSON.parse(alphaConfig.toString()), dims: 'x' }));
    const r = await upload('dims', config, alphaWeights);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param: 'config', code: 'invalid_adapter' });
    expect(r.body.error.message).toMatch(/dims/);
    expect(r.body.error.message).not.toMatch(/\/tmp|Exception|Traceback|para-adapter-/);
  });

  it('reports what the worker refuses without its temporary paths', async () => {
    const config = Buffer.from(JSON.stringify({ ...JSON.parse(alphaConfig.toString()), r: 3 })); // shapes no longer match
    const r = await upload('shapes', config, alphaWeights);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_adapter');
    expect(r.body.error.message).toMatch(/does not fit the backbone/);
    expect(r.body.error.message).not.toMatch(/\/tmp|para-adapter-|Exception/);
  });

  it.each([
    ['all weights 1e30', 1e30],
    ['all weights -1e4', -1e4],
  ])('refuses an adapter with %s, naming the tensor', async (_what, value) => {
    const r = await upload('huge', alphaConfig, weightsOf(value));
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_adapter');
    expect(r.body.error.message).toMatch(/tensor layers\.\d+\.\w+\.weight holds a weight of magnitude .* above the limit of 1000/);
    expect((await tenantClient(gw.url, key).adapters.list()).map((a) => a.id)).not.toContain('acme/huge');
    await stillServing();
  });
});

describe('the unauthenticated surface', () => {
  it('keeps /metrics, which names tenants and their adapters, behind the operator key', async () => {
    await postJson(gw.url, '/v1/completions', key, { model: 'acme/private-helper', prompt: 'x', max_tokens: 2 });
    expect((await fetch(`${gw.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(403);
    const metrics = await (await operatorFetch(gw.url, '/metrics')).text();
    expect(metrics).toContain('model="acme/private-helper"');
    for (const path of ['/healthz', '/openapi.json']) expect((await (await fetch(`${gw.url}${path}`)).text()).includes('private-helper')).toBe(false);
  });
});

describe('start-up', () => {
  it('clears what a crashed upload left in the staging folder', async () => {
    const dataDir = join(tiny, 'staging-check');
    const leftover = join(dataDir, 'staging', 'deadbeef');
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'adapter_model.safetensors'), Buffer.alloc(1024));
    const other = await startTestGateway([worker.address], { dataDir });
    try {
      expect(existsSync(leftover)).toBe(false);
    } finally {
      await other.gateway.close();
    }
  });
});

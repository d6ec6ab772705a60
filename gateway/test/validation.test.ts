// Bad input of every kind gets a clear OpenAI-shaped error, and the gateway keeps serving with its state intact.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseSafetensors, SafetensorsError } from '../src/registry/safetensors.js';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { REPO_ROOT } from './helpers/paths.js';
import { type TestGateway, jsonOf, postJson, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const alphaConfig = readFileSync(join(tiny, 'adapters/alpha/adapter_config.json'));
const alphaWeights = readFileSync(join(tiny, 'adapters/alpha/adapter_model.safetensors'));
const messages = [{ role: 'user', content: 'hello' }];
let worker: EngineWorker;
let gw: TestGateway;
let key: string;

/** A safetensors file from a header object and a data length. */
function safetensors(header: object, dataBytes: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(dataBytes)]);
}

async function upload(fields: Record<string, string | Buffer>, apiKey = key) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === 'string') form.set(name, value);
    else form.set(name, new Blob([value]), name === 'config' ? 'adapter_config.json' : 'adapter_model.safetensors');
  }
  const response = await fetch(`${gw.url}/v1/adapters`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: form });
  return { status: response.status, body: await jsonOf(response) };
}

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  gw = await startTestGateway([worker.address], { maxBodyBytes: 64 * 1024 });
  key = await tenantWithKey(gw.admin, 'acme');
  await tenantClient(gw.url, key).adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'good' });
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

/** After each kind of abuse: still serving, and the good adapter is still there. */
async function stillServing() {
  const r = await postJson(gw.url, '/v1/chat/completions', key, { model: 'acme/good', messages, max_tokens: 2 });
  expect(r.status).toBe(200);
  expect((await tenantClient(gw.url, key).adapters.list()).map((a) => `${a.id}@${a.versions}`)).toEqual(['acme/good@1']);
}

describe('bad inference requests', () => {
  const cases: [string, unknown, string | null][] = [
    ['wrong type', { model: 'base', messages, max_tokens: 'ten' }, 'max_tokens'],
    ['out of range', { model: 'base', messages, temperature: 7 }, 'temperature'],
    ['empty messages', { model: 'base', messages: [] }, 'messages'],
    ['bad role', { model: 'base', messages: [{ role: 'wizard', content: 'x' }] }, 'messages.0.role'],
    ['missing model', { messages }, 'model'],
    ['not an object', [1, 2, 3], null],
    ['n too large', { model: 'base', messages, n: 1000 }, 'n'],
    ['top_logprobs above 20', { model: 'base', messages, logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
    ['stream_options without stream', { model: 'base', messages, stream_options: { include_usage: true } }, 'stream_options'],
  ];
  for (const [name, body, param] of cases) {
    it(`refuses ${name} with 400`, async () => {
      const r = await postJson(gw.url, '/v1/chat/completions', key, body);
      expect(r.status).toBe(400);
      expect(r.body.error.type).toBe('invalid_request_error');
      expect(r.body.error.param).toBe(param);
      expect(r.body.error.message.length).toBeGreaterThan(5);
    });
  }

  it.each([
    [65, 1, 'prompt'],
    [17, 4, 'n'],
  ])('refuses %i prompts × n=%i (over 8 × the 8 choices allowed) naming %s', async (prompts, n, param) => {
    const r = await postJson(gw.url, '/v1/completions', key, { model: 'base', prompt: Array.from({ length: prompts }, () => 'x'), n, max_tokens: 1 });
    expect(r.status).toBe(400);
    expect(r.body.error.param).toBe(param);
    expect(r.body.error.message).toContain('at most 64');
  });

  it('refuses malformed JSON with 400', async () => {
    const r = await postJson(gw.url, '/v1/chat/completions', key, '{"model": "base", "messages": [', true);
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/JSON/);
  });

  it('refuses a body over the limit with 413', async () => {
    const r = await postJson(gw.url, '/v1/completions', key, { model: 'base', prompt: 'x'.repeat(200_000) });
    expect(r.status).toBe(413);
    expect(r.body.error.type).toBe('invalid_request_error');
    await stillServing();
  });

  it('refuses unknown models with 404, unknown routes with 404', async () => {
    for (const model of ['nope', 'acme/nope', 'acme/good@9', '../etc/passwd', 'ACME/Good']) {
      const r = await postJson(gw.url, '/v1/completions', key, { model, prompt: 'x' });
      expect(r.status, model).toBe(404);
      expect(r.body.error.code).toBe('model_not_found');
    }
    const route = await postJson(gw.url, '/v1/engines', key, {});
    expect(route.status).toBe(404);
    expect(route.body.error.type).toBe('invalid_request_error');
  });

  it('reports a prompt longer than the context as 400, streamed or not', async () => {
    const prompt = 'the cat sat on the mat '.repeat(200); // far over the tiny model's 256 tokens
    const plain = await postJson(gw.url, '/v1/completions', key, { model: 'acme/good', prompt, max_tokens: 2 });
    expect(plain.status).toBe(400);
    expect(plain.body.error.type).toBe('invalid_request_error');
    const streamed = await postJson(gw.url, '/v1/completions', key, { model: 'acme/good', prompt, max_tokens: 2, stream: true });
    expect(streamed.status).toBe(400);
    await stillServing();
  });
});

describe('bad adapter uploads', () => {
  const config = alphaConfig;
  it.each([
    ['not multipart', null, 400],
    ['missing weights', { name: 'x', config }, 400],
    ['missing name', { config, weights: alphaWeights.subarray(0, 100) }, 400],
    ['bad name', { name: 'Bad Name!', config, weights: alphaWeights }, 400],
    ['config not JSON', { name: 'x', config: Buffer.from('{nope'), weights: alphaWeights }, 400],
    ['a LoRA config without target_modules', { name: 'x', config: Buffer.from('{"peft_type": "LORA", "r": 8}'), weights: alphaWeights }, 400],
    ['neither PARA nor LoRA', { name: 'x', config: Buffer.from('{"peft_type": "IA3"}'), weights: alphaWeights }, 400],
    ['random bytes as weights', { name: 'x', config, weights: Buffer.from('this is not a safetensors file at all') }, 400],
    ['header length past the end', { name: 'x', config, weights: Buffer.concat([Buffer.from([255, 255, 0, 0, 0, 0, 0, 0]), Buffer.alloc(64)]) }, 400],
    ['offsets past the end', { name: 'x', config, weights: safetensors({ w: { dtype: 'F32', shape: [4, 4], data_offsets: [0, 64] } }, 32) }, 400],
  ] as const)('refuses %s', async (_name, fields, status) => {
    let result;
    if (fields === null) {
      result = await postJson(gw.url, '/v1/adapters', key, { name: 'x' });
    } else {
      result = await upload(fields as Record<string, string | Buffer>);
    }
    expect(result.status).toBe(status);
    expect(result.body.error.type).toBe('invalid_request_error');
    await stillServing();
  });

  it('refuses an adapter whose shapes do not fit the backbone (checked by the worker)', async () => {
    // A well-formed SmolLM2 adapter: its header passes, the tiny backbone's worker refuses its shapes.
    const copa = join(REPO_ROOT, 'adapters/smollm2-135m/copa');
    const r = await upload({ name: 'wrong-shape', config: readFileSync(join(copa, 'adapter_config.json')), weights: readFileSync(join(copa, 'adapter_model.safetensors')) });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'invalid_adapter', param: 'weights' });
    expect(r.body.error.message).toMatch(/does not fit the backbone/);
    await stillServing();
  });

  it('refuses weights with NaN (checked by the worker)', async () => {
    const weights = Buffer.from(alphaWeights);
    weights.writeFloatLE(Number.NaN, 8 + Number(weights.readBigUInt64LE(0)) + 4);
    const r = await upload({ name: 'nan', config: alphaConfig, weights });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_adapter');
    await stillServing();
  });

  it('refuses weights over the size limit with 413', async () => {
    const small = await startTestGateway([worker.address], { maxAdapterBytes: 4000 });
    try {
      const smallKey = await tenantWithKey(small.admin, 'acme');
      const form = new FormData();
      form.set('name', 'big');
      form.set('config', new Blob([alphaConfig]), 'adapter_config.json');
      form.set('weights', new Blob([alphaWeights]), 'adapter_model.safetensors'); // 4968 bytes
      const response = await fetch(`${small.url}/v1/adapters`, { method: 'POST', headers: { authorization: `Bearer ${smallKey}` }, body: form });
      expect(response.status).toBe(413);
      expect((await jsonOf(response)).error.type).toBe('invalid_request_error');
      expect(await tenantClient(small.url, smallKey).adapters.list()).toEqual([]);
      const ok = await tenantClient(small.url, smallKey).adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'fits' }); // 2664 bytes
      expect(ok.version).toBe(1);
    } finally {
      await small.close();
    }
  });
});

describe('safetensors header checks', () => {
  const ok = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'BF16', shape: [4], data_offsets: [16, 24] } };
  it('accepts a well-formed file and counts parameters', () => {
    expect(parseSafetensors(safetensors({ __metadata__: { format: 'pt' }, ...ok }, 24)).parameters).toBe(8);
    expect(parseSafetensors(alphaWeights).tensors.length).toBe(4);
  });
  it.each([
    ['overlap', { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 16],
    ['hole', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 16],
    ['trailing bytes', ok, 40],
    ['size mismatch', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, 16],
    ['integer dtype', { a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16],
    ['unknown dtype', { a: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, 16],
    ['no tensors', { __metadata__: {} }, 0],
    ['bad metadata', { __metadata__: { a: 1 }, ...ok }, 24],
    ['negative shape', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4],
  ])('refuses %s', (_name, header, bytes) => {
    expect(() => parseSafetensors(safetensors(header, bytes))).toThrow(SafetensorsError);
  });
  it('refuses a header that is not JSON', () => {
    const b = Buffer.alloc(20);
    b.writeBigUInt64LE(4n);
    b.write('{{{{', 8);
    expect(() => parseSafetensors(b)).toThrow(/not JSON/);
  });
});

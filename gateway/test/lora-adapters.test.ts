// peft LoRA adapters as tenants' models: what `para train --method lora` saved uploads unchanged through the
// gateway, gives the same tokens as peft's merged model, and shares decoding steps with PARA and bare rows.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type EngineWorker, startWorker, statsDirect } from './helpers/engine.js';
import { type TestGateway, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';
import { PYTHON } from './helpers/paths.js';

const tiny = inject('tinyDir');
const loraDir = join(tiny, 'adapters/lora');
let worker: EngineWorker;
let gw: TestGateway;
let key: string;
let client: OpenAI;
const prompt = 'the cat sat on the mat';

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  gw = await startTestGateway([worker.address], { sharedAdapters: [{ name: 'alpha', dir: join(tiny, 'adapters/alpha') }] });
  key = await tenantWithKey(gw.admin, 'acme');
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

describe('LoRA adapters through the API', () => {
  it('uploads what para train --method lora saved and serves the tokens of peft\'s merged model', async () => {
    const uploaded = await tenantClient(gw.url, key).adapters.uploadDirectory(loraDir, { name: 'support' });
    expect(uploaded.id).toBe('acme/support');
    const reply = await client.chat.completions.create({ model: 'acme/support', messages: [{ role: 'user', content: prompt }], max_tokens: 12, temperature: 0 });
    const { stdout } = await promisify(execFile)(PYTHON, [join(import.meta.dirname, 'python/peft_merged.py'), join(tiny, 'model'), loraDir, '12', prompt], { timeout: 120_000 });
    const reference = JSON.parse(stdout) as { text: string; tokens: number };
    expect(reply.choices[0]!.message.content).toBe(reference.text);
    expect(reply.usage!.completion_tokens).toBe(reference.tokens);
    const bare = await client.chat.completions.create({ model: 'base', messages: [{ role: 'user', content: prompt }], max_tokens: 12, temperature: 0 });
    expect(reply.choices[0]!.message.content).not.toBe(bare.choices[0]!.message.content); // the adapter moved the model
    const kinds = Object.fromEntries((await client.models.list()).data.map((m) => [m.id, (m as unknown as { kind: string }).kind]));
    expect(kinds).toEqual({ base: 'base', alpha: 'para', 'acme/support': 'lora' });
    expect(uploaded.kind).toBe('lora');
  });

  it('mixes PARA, LoRA and bare rows in one decoding step', async () => {
    // Long enough that the six overlap in some step even on a loaded machine (they arrive over HTTP at once).
    const ask = (model: string) => client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 128, temperature: 0, ignore_eos: true } as never);
    await Promise.all(['alpha', 'acme/support', 'base', 'alpha', 'acme/support', 'base'].map(ask));
    const stats = await statsDirect(worker.address);
    expect(stats.peak_kinds).toBe(3);
    expect(stats.peak_kinds_rows).toBeGreaterThanOrEqual(3);
  });

  it('refuses a LoRA adapter the engine cannot serve, by name, before storing it', async () => {
    const config = JSON.parse(await readFile(join(loraDir, 'adapter_config.json'), 'utf8'));
    const weights = await readFile(join(loraDir, 'adapter_model.safetensors'));
    const upload = (changes: object) => tenantClient(gw.url, key).adapters.upload({ name: 'bad', config: Buffer.from(JSON.stringify({ ...config, ...changes })), weights }).then(() => null, (err: unknown) => err as Error);
    expect((await upload({ use_dora: true }))?.message).toMatch(/use_dora/);
    expect((await upload({ target_modules: ['lm_head'] }))?.message).toMatch(/target_modules/);
    expect((await upload({ r: 8 }))?.message).toMatch(/rank 8/); // the weights are rank 4
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).not.toContain('acme/bad');
  });
});

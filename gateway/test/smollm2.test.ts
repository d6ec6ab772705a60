// The embedded SmolLM2-135M with the committed copa adapter, end to end through the gateway.
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type EngineWorker, generateDirect, loadDirect, startWorker } from './helpers/engine.js';
import { type TestGateway, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';
import { REPO_ROOT } from './helpers/paths.js';

const COPA = join(REPO_ROOT, 'adapters/smollm2-135m/copa');
const messages = [{ role: 'user' as const, content: 'The man broke his toe. What was the cause? Answer briefly.' }];
let worker: EngineWorker;
let gw: TestGateway;

beforeAll(async () => {
  worker = await startWorker({ model: 'smollm2-135m', slots: 4, maxLen: 512 });
  gw = await startTestGateway([worker.address], { backbone: 'smollm2-135m', sharedAdapters: [{ name: 'copa', dir: COPA }] });
  await loadDirect(worker.address, 'direct-copa', COPA);
}, 240_000);

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

it('serves copa through the openai package, equal to the engine with the same adapter', async () => {
  const key = await tenantWithKey(gw.admin, 'school');
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
  const chat = await client.chat.completions.create({ model: 'copa', messages, max_tokens: 12, temperature: 0 });
  const direct = await generateDirect(worker.address, 'direct-copa', { chat: { messages } }, { max_tokens: 12, temperature: 0 });
  expect(chat.choices[0]!.message.content).toBe(direct.text);
  expect(chat.choices[0]!.message.content!.trim().length).toBeGreaterThan(0);

  let streamed = '';
  for await (const chunk of await client.chat.completions.create({ model: 'copa', messages, max_tokens: 12, temperature: 0, stream: true })) {
    streamed += chunk.choices[0]?.delta.content ?? '';
  }
  expect(streamed).toBe(direct.text);

  // A tenant's own upload of the same files is validated against the real backbone and serves the same text.
  const own = await tenantClient(gw.url, key).adapters.uploadDirectory(COPA, { name: 'my-copa' });
  expect(own.parameters).toBe((await gw.admin.adapters.get('copa')).parameters);
  const mine = await client.chat.completions.create({ model: 'school/my-copa', messages, max_tokens: 12, temperature: 0 });
  expect(mine.choices[0]!.message.content).toBe(direct.text);
}, 120_000);

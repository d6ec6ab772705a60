// The blast radius of one tenant's bad input: over two workers, one tenant sends every kind of bad input
// that once took workers out (lone surrogates, integers that wrapped, out-of-range token ids and prompts,
// huge or malformed adapters, dotted names, truncated uploads, clients that hang up mid-stream) while another
// tenant streams through the official openai package. Every one of the other tenant's streams must finish,
// no worker may be taken out, and every bad request must be refused with a 4xx, never a 5xx.
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { type TestGateway, postJson, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const model = join(tiny, 'model');
const alphaConfig = readFileSync(join(tiny, 'adapters/alpha/adapter_config.json'));
const alphaWeights = readFileSync(join(tiny, 'adapters/alpha/adapter_model.safetensors'));
const LONE = '\ud800';
let workers: EngineWorker[];
let gw: TestGateway;
let attackerKey: string;
let victimKey: string;

beforeAll(async () => {
  workers = await Promise.all([startWorker({ model, maxLen: 1024 }), startWorker({ model, maxLen: 1024 })]);
  gw = await startTestGateway(workers.map((w) => w.address));
  attackerKey = await tenantWithKey(gw.admin, 'mallory', { rpm: 100_000, tpm: 100_000_000 });
  victimKey = await tenantWithKey(gw.admin, 'alice', { rpm: 100_000, tpm: 100_000_000 });
  await tenantClient(gw.url, victimKey).adapters.uploadDirectory(join(tiny, 'adapters/gamma'), { name: 'assistant' });
  await tenantClient(gw.url, attackerKey).adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'tool' });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all((workers ?? []).map((w) => w.stop()));
});

function weightsOf(value: number): Buffer {
  const weights = Buffer.from(alphaWeights);
  for (let at = 8 + Number(weights.readBigUInt64LE(0)); at + 4 <= weights.length; at += 4) weights.writeFloatLE(value, at);
  return weights;
}

async function upload(name: string, config: Buffer, weights: Buffer): Promise<number> {
  const form = new FormData();
  form.set('name', name);
  form.set('config', new Blob([config]), 'adapter_config.json');
  form.set('weights', new Blob([weights]), 'adapter_model.safetensors');
  return (await fetch(`${gw.url}/v1/adapters`, { method: 'POST', headers: { authorization: `Bearer ${attackerKey}` }, body: form })).status;
}

function truncatedUpload(): Promise<number> {
  const head = '--b\r\ncontent-disposition: form-data; name="weights"; filename="w"\r\n\r\n';
  const body = Buffer.concat([Buffer.from(head), alphaWeights.subarray(0, 64)]);
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${gw.url}/v1/adapters`, {
      method: 'POST',
      headers: { authorization: `Bearer ${attackerKey}`, 'content-type': 'multipart/form-data; boundary=b', 'content-length': body.length },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A stream the attacker abandons after its first bytes. */
async function hangUp(): Promise<number> {
  const abort = new AbortController();
  const response = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${attackerKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mallory/tool', messages: [{ role: 'user', content: 'go' }], max_tokens: 500, stream: true }),
    signal: abort.signal,
  });
  await response.body!.getReader().read();
  abort.abort();
  return 499;
}

const chat = (body: object) => postJson(gw.url, '/v1/chat/completions', attackerKey, { model: 'mallory/tool', messages: [{ role: 'user', content: 'x' }], max_tokens: 4, ...body }).then((r) => r.status);
const complete = (body: object) => postJson(gw.url, '/v1/completions', attackerKey, { model: 'base', prompt: 'x', max_tokens: 4, ...body }).then((r) => r.status);

/** Every class of bad input, by name. */
const ATTACKS: Record<string, () => Promise<number>> = {
  'lone surrogate in a message': () => chat({ messages: [{ role: 'user', content: LONE }] }),
  'lone surrogate in a stop string': () => chat({ stop: [LONE] }),
  'lone surrogate in a prompt, streamed': () => complete({ prompt: `a${LONE}`, stream: true }),
  'lone surrogate in user': () => complete({ user: LONE }),
  'max_tokens of 2^32 + 3': () => complete({ max_tokens: 2 ** 32 + 3 }),
  'max_tokens over the context': () => complete({ max_tokens: 5000 }),
  'token id of 2^32 + 1': () => complete({ prompt: [3, 2 ** 32 + 1] }),
  'token id outside the vocabulary (refused by the worker)': () => complete({ prompt: [3, 100_000] }),
  'prompt longer than the context (refused by the worker)': () => complete({ prompt: 'the cat sat on the mat '.repeat(400), max_tokens: 2 }),
  'empty prompt (refused by the worker)': () => complete({ prompt: '' }),
  'adapter with weights of 1e30': () => upload('huge', alphaConfig, weightsOf(1e30)),
  'adapter with dims "x"': () => upload('dims', Buffer.from(JSON.stringify({ ...JSON.parse(alphaConfig.toString()), dims: 'x' })), alphaWeights),
  'adapter that does not fit the backbone': () => upload('misfit', Buffer.from(JSON.stringify({ ...JSON.parse(alphaConfig.toString()), r: 3 })), alphaWeights),
  'adapter name with a dot': () => upload('my.adapter', alphaConfig, alphaWeights),
  'model name with a dot': () => complete({ model: 'mallory/my.adapter' }),
  'another tenant\'s adapter': () => complete({ model: 'alice/assistant' }),
  'truncated multipart upload': truncatedUpload,
  'n over the maximum': () => complete({ n: 9 }),
  'client that hangs up mid-stream': hangUp,
};

it('lets the other tenant\'s streams finish, every one, while one tenant sends every bad input', async () => {
  const healthyAlways: boolean[] = [];
  const watch = setInterval(() => healthyAlways.push(gw.gateway.pool.workers.every((w) => w.healthy)), 20);
  let attacking = true;
  const outcomes = new Map<string, number[]>();
  const attacker = (async () => {
    while (attacking) {
      await Promise.all(
        Object.entries(ATTACKS).map(async ([name, attack]) => {
          const status = await attack();
          outcomes.set(name, [...(outcomes.get(name) ?? []), status]);
        }),
      );
    }
  })();

  const victim = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: victimKey, maxRetries: 0 });
  const ROUNDS = 5;
  const CONCURRENT = 32;
  let sent = 0;
  let completed = 0;
  const failures: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      Array.from({ length: CONCURRENT }, async (_, i) => {
        sent += 1;
        try {
          const stream = await victim.chat.completions.create({
            model: i % 2 ? 'alice/assistant' : 'base',
            messages: [{ role: 'user', content: `story ${round}-${i}` }],
            max_tokens: 120,
            temperature: 0.8,
            seed: i,
            stream: true,
          });
          let finish: string | null = null;
          for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
          if (finish) completed += 1;
          else failures.push('a stream ended without finish_reason');
        } catch (err) {
          failures.push(err instanceof Error ? err.message : String(err));
        }
      }),
    );
  }
  attacking = false;
  await attacker;
  clearInterval(watch);

  const attacks = [...outcomes.values()].reduce((a, s) => a + s.length, 0);
  console.log(`poison: the other tenant completed ${completed} of ${sent} streams while ${attacks} bad requests of ${outcomes.size} kinds were sent`);
  expect(failures).toEqual([]);
  expect(completed).toBe(sent);
  expect(healthyAlways.length).toBeGreaterThan(10);
  expect(healthyAlways.every(Boolean)).toBe(true); // no worker was ever taken out
  for (const [name, statuses] of outcomes) {
    for (const status of statuses) {
      expect(status, name).toBeGreaterThanOrEqual(400);
      expect(status, name).toBeLessThan(500);
    }
  }
  expect(outcomes.size).toBe(Object.keys(ATTACKS).length);
}, 240_000);

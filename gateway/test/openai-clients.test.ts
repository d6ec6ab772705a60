// The official openai packages (Node and Python), unmodified, against the gateway and a real tiny engine.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type EngineWorker, generateDirect, startWorker } from './helpers/engine.js';
import { type TestGateway, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';
import { PYTHON } from './helpers/paths.js';

const tiny = inject('tinyDir');
let worker: EngineWorker;
let gw: TestGateway;
let key: string;
let client: OpenAI;
const messages = [{ role: 'user' as const, content: 'the cat sat on the mat' }];

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  gw = await startTestGateway([worker.address], { sharedAdapters: [{ name: 'alpha', dir: join(tiny, 'adapters/alpha') }] });
  key = await tenantWithKey(gw.admin, 'acme');
  await tenantClient(gw.url, key).adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'beta' });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

describe('openai Node package', () => {
  it('completes a chat, equal to the engine called directly with the same adapter', async () => {
    const chat = await client.chat.completions.create({ model: 'alpha', messages, max_tokens: 6, temperature: 0 });
    expect(chat.object).toBe('chat.completion');
    expect(chat.model).toBe('alpha@1');
    const choice = chat.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(['stop', 'length']).toContain(choice.finish_reason);
    expect(chat.usage!.completion_tokens).toBeGreaterThan(0);
    expect(chat.usage!.completion_tokens).toBeLessThanOrEqual(6);
    expect(chat.usage!.total_tokens).toBe(chat.usage!.prompt_tokens + chat.usage!.completion_tokens);
    // The gateway pushed alpha to the worker as alpha@1; ask the worker for the same thing directly.
    const direct = await generateDirect(worker.address, 'alpha@1', { chat: { messages } }, { max_tokens: 6, temperature: 0 });
    expect(choice.message.content).toBe(direct.text);
    expect(chat.usage!.prompt_tokens).toBe(direct.usage!.prompt_tokens);
  });

  it('streams a chat whose deltas add up to the non-streamed reply, with a usage chunk', async () => {
    const whole = await client.chat.completions.create({ model: 'acme/beta', messages, max_tokens: 6, temperature: 0 });
    const stream = await client.chat.completions.create({
      model: 'acme/beta', messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let role: string | undefined;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.id).toMatch(/^chatcmpl-/);
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        role ??= c.delta.role;
        text += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
    }
    expect(chunks).toBeGreaterThan(2);
    expect(role).toBe('assistant');
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage).toEqual(whole.usage);
  });

  it('gives different adapters different output', async () => {
    const outputs = await Promise.all(
      ['base', 'alpha', 'acme/beta'].map(async (model) =>
        (await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 })).choices[0]!.message.content),
    );
    expect(new Set(outputs).size).toBe(3);
  });

  it('completes text with logprobs, n choices and seeds', async () => {
    const completion = await client.completions.create({ model: 'alpha', prompt: 'the dog ran', max_tokens: 5, temperature: 0.9, n: 3, seed: 7, logprobs: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices.map((c) => c.index).sort()).toEqual([0, 1, 2]);
    let completionTokens = 0;
    for (const choice of completion.choices) {
      const lp = choice.logprobs!;
      expect(lp.token_logprobs!.length).toBe(lp.tokens!.length);
      expect(lp.tokens!.join('')).toBe(choice.text);
      for (const value of lp.token_logprobs!) expect(value).toBeLessThanOrEqual(0);
      completionTokens += lp.tokens!.length;
    }
    expect(completion.usage!.completion_tokens).toBe(completionTokens);
    // The same seed gives the same three choices again.
    const again = await client.completions.create({ model: 'alpha', prompt: 'the dog ran', max_tokens: 5, temperature: 0.9, n: 3, seed: 7 });
    expect(again.choices.map((c) => c.text)).toEqual(completion.choices.map((c) => c.text));
  });

  it('stops at a stop string, which is not returned', async () => {
    const full = await client.completions.create({ model: 'alpha', prompt: 'the cat', max_tokens: 12, temperature: 0 });
    const text = full.choices[0]!.text;
    expect(text.length).toBeGreaterThan(4);
    const stop = text.slice(3, 5);
    const stopped = await client.completions.create({ model: 'alpha', prompt: 'the cat', max_tokens: 12, temperature: 0, stop: [stop] });
    expect(stopped.choices[0]!.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
  });

  it('streams completions for several prompts', async () => {
    const stream = await client.completions.create({ model: 'base', prompt: ['the cat', 'a dog'], max_tokens: 3, temperature: 0, stream: true });
    const texts = ['', ''];
    const finished = new Set<number>();
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.text;
        if (c.finish_reason) finished.add(c.index);
      }
    }
    expect(finished).toEqual(new Set([0, 1]));
    const direct = await generateDirect(worker.address, '', { prompt: 'a dog' }, { max_tokens: 3, temperature: 0 });
    expect(texts[1]).toBe(direct.text);
  });

  it('lists the models the tenant may use and reports unknown ones as 404', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    expect(models.sort()).toEqual(['acme/beta', 'alpha', 'base']);
    await expect(client.chat.completions.create({ model: 'acme/nope', messages, max_tokens: 2 })).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
      type: 'invalid_request_error',
    });
  });
});

describe('a client that goes away', () => {
  it('frees the engine slot when a stream is aborted', async () => {
    const stream = await client.completions.create({ model: 'alpha', prompt: 'the cat', max_tokens: 1500, temperature: 0, stream: true });
    let chunks = 0;
    for await (const _chunk of stream) {
      if (++chunks === 3) stream.controller.abort();
    }
    const state = gw.gateway.pool.workers[0]!;
    const deadline = Date.now() + 5000;
    while (state.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(state.inflight).toBe(0);
    // The worker stopped generating (it learns of the cancel asynchronously): its Stats show nothing running.
    const stopped = Date.now() + 5000;
    do {
      await new Promise((r) => setTimeout(r, 50));
      await gw.gateway.pool.check(state);
    } while (state.stats?.running !== 0 && Date.now() < stopped);
    expect(state.stats?.running).toBe(0);
    const after = await client.completions.create({ model: 'alpha', prompt: 'a', max_tokens: 2 });
    expect(after.choices).toHaveLength(1);
  });
});

describe('openai Python package', () => {
  it('completes, streams and lists models', async () => {
    const { stdout } = await promisify(execFile)(PYTHON, [join(import.meta.dirname, 'python/openai_client.py'), gw.url, key, 'acme/beta'], { timeout: 60_000 });
    const result = JSON.parse(stdout);
    expect(result.chat.length).toBeGreaterThan(0);
    expect(result.streamed).toBe(result.chat);
    expect(result.chat_model).toBe('acme/beta@1');
    expect(result.stream_usage).toEqual(result.chat_usage);
    expect(['stop', 'length']).toContain(result.stream_finish);
    expect(result.completion_logprobs.length).toBeGreaterThan(0);
    expect(result.models).toEqual(['acme/beta', 'alpha', 'base']);
    expect(result.not_found).toEqual({ status: 404, code: 'model_not_found' });
    expect(['yes', 'no', 'maybe']).toContain(result.parsed);
    expect(result.top_logprobs).toEqual([5, 5, 5]);
    expect(result.refused).toEqual({ tools: 'tools', reasoning_effort: 'reasoning_effort', store: 'store', colour: 'colour' });
  });
});

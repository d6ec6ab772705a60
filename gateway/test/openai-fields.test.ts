// Every OpenAI request field is honoured (with a visible effect, checked against the engine called directly)
// or refused with a 400 that names it; driven by the official `openai` Node package against a tiny engine.
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type EngineWorker, generateDirect, startWorker } from './helpers/engine.js';
import { type TestGateway, operatorFetch, postJson, startTestGateway, tenantWithKey } from './helpers/gateway.js';

const tiny = inject('tinyDir');
let worker: EngineWorker;
let gw: TestGateway;
let key: string;
let client: OpenAI;
const messages = [{ role: 'user' as const, content: 'the cat sat on the mat' }];
const chatInput = { chat: { messages } };

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model') });
  gw = await startTestGateway([worker.address], { sharedAdapters: [{ name: 'alpha', dir: join(tiny, 'adapters/alpha') }] });
  key = await tenantWithKey(gw.admin, 'acme');
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
  await client.chat.completions.create({ model: 'alpha', messages, max_tokens: 1 }); // alpha@1 onto the worker
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

/** The worker's own greedy tokens for the chat, with extra sampling fields. */
const direct = (sampling: object, max_tokens = 8) => generateDirect(worker.address, 'alpha@1', chatInput, { max_tokens, temperature: 0, ignore_eos: true, ...sampling });

describe('honoured fields', () => {
  it('logit_bias of -100 on the greedy first token changes it, as the engine does', async () => {
    const plain = await direct({});
    const first = plain.tokenIds[0]!;
    const biased = await client.chat.completions.create({ model: 'alpha', messages, max_tokens: 8, temperature: 0, logit_bias: { [first]: -100 }, ignore_eos: true } as never);
    const expected = await direct({ logit_bias: { [first]: -100 } });
    expect(expected.tokenIds[0]).not.toBe(first);
    expect(biased.choices[0]!.message.content).toBe(expected.text);
    expect(biased.choices[0]!.message.content).not.toBe(plain.text);
  });

  it('presence, frequency and repetition penalties change a repetitive continuation', async () => {
    const plain = await direct({}, 24);
    expect(new Set(plain.tokenIds).size).toBeLessThan(plain.tokenIds.length); // the tiny model repeats itself
    for (const fields of [{ frequency_penalty: 2 }, { presence_penalty: 2 }, { repetition_penalty: 3 }]) {
      const reply = await client.chat.completions.create({ model: 'alpha', messages, max_tokens: 24, temperature: 0, ignore_eos: true, ...fields } as never);
      const expected = await direct(fields, 24);
      expect(reply.choices[0]!.message.content).toBe(expected.text);
      expect(expected.text).not.toBe(plain.text);
    }
  });

  it('top_logprobs returns that many alternatives per token, with the engine\'s log-probabilities', async () => {
    const reply = await client.chat.completions.create({ model: 'alpha', messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 4, ignore_eos: true } as never);
    const expected = await direct({ top_logprobs: 4 }, 5);
    const content = reply.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(5);
    content.forEach((token, i) => {
      expect(token.top_logprobs).toHaveLength(4);
      expect(token.logprob).toBeCloseTo(expected.logprobs[i]!, 5);
      token.top_logprobs.forEach((alt, j) => expect(alt.logprob).toBeCloseTo(expected.topLogprobs[i]!.logprobs[j]!, 5));
      expect(token.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(token.top_logprobs[3]!.logprob);
      expect(token.top_logprobs[0]!.logprob).toBeCloseTo(token.logprob, 5); // greedy: the chosen token is the best
    });
    const completion = await client.completions.create({ model: 'alpha', prompt: 'the cat', max_tokens: 3, temperature: 0, logprobs: 3 });
    // Alternatives are keyed by text (OpenAI's legacy shape), so two tokens that decode alike share a key.
    for (const alternatives of completion.choices[0]!.logprobs!.top_logprobs!) expect(Object.keys(alternatives).length).toBeGreaterThanOrEqual(1);
    expect(completion.choices[0]!.logprobs!.top_logprobs!).toHaveLength(3);
  });

  it('seed makes a sampled reply reproducible; max_completion_tokens and stop lists bound it', async () => {
    const ask = (seed: number) => client.chat.completions.create({ model: 'alpha', messages, max_completion_tokens: 10, temperature: 1, seed, ignore_eos: true } as never);
    const [a, b] = await Promise.all([ask(7), ask(7)]);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    expect(a.usage!.completion_tokens).toBe(10);
  });

  it('response_format json_schema and json_object give JSON that matches', async () => {
    const schema = { type: 'object', additionalProperties: false, required: ['answer'], properties: { answer: { type: 'string', enum: ['yes', 'no', 'maybe'] } } };
    const [constrained, object, free] = await Promise.all([
      client.chat.completions.create({ model: 'alpha', messages, max_tokens: 40, temperature: 0, response_format: { type: 'json_schema', json_schema: { name: 'verdict', schema, strict: true } } }),
      client.chat.completions.create({ model: 'base', messages, max_tokens: 60, temperature: 0, response_format: { type: 'json_object' } }),
      client.chat.completions.create({ model: 'alpha', messages, max_tokens: 8, temperature: 0 }),
    ]);
    expect(['yes', 'no', 'maybe']).toContain(JSON.parse(constrained.choices[0]!.message.content!).answer);
    expect(constrained.choices[0]!.finish_reason).toBe('stop');
    if (object.choices[0]!.finish_reason === 'stop') expect(typeof JSON.parse(object.choices[0]!.message.content!)).toBe('object');
    else expect(object.choices[0]!.message.content!.startsWith('{')).toBe(true); // cut by max_tokens
    // A free row of the same batch is untouched by its neighbours' masks.
    expect(free.choices[0]!.message.content).toBe((await generateDirect(worker.address, 'alpha@1', chatInput, { max_tokens: 8, temperature: 0 })).text);
  });
});

describe('user', () => {
  it('is recorded with the usage of each request that names one', async () => {
    const replies = await Promise.all([
      client.chat.completions.create({ model: 'alpha', messages, max_tokens: 3, user: 'u-1' }),
      client.completions.create({ model: 'alpha', prompt: 'the cat', max_tokens: 4, user: 'u-1' }),
      client.chat.completions.create({ model: 'alpha', messages, max_tokens: 2, safety_identifier: 'u-2' } as never),
      client.chat.completions.create({ model: 'alpha', messages, max_tokens: 2 }),
    ]);
    const tokens = (r: { usage?: { total_tokens: number } | null }) => r.usage!.total_tokens;
    const rows = ((await (await operatorFetch(gw.url, '/admin/v1/usage/users')).json()) as { data: unknown }).data as { tenant: string; model: string; user: string; requests: number; prompt_tokens: number; completion_tokens: number }[];
    const of = (user: string) => rows.find((r) => r.tenant === 'acme' && r.model === 'alpha' && r.user === user)!;
    expect(of('u-1').requests).toBe(2);
    expect(of('u-1').prompt_tokens + of('u-1').completion_tokens).toBe(tokens(replies[0]) + tokens(replies[1]));
    expect(of('u-2').requests).toBe(1);
    expect(of('u-2').prompt_tokens + of('u-2').completion_tokens).toBe(tokens(replies[2]));
    expect(rows.filter((r) => r.tenant === 'acme')).toHaveLength(2); // the request without a user has no row
  });
});

describe('refused fields', () => {
  const chat = { model: 'alpha', messages, max_tokens: 2 };
  const refusals: [string, object, string][] = [
    ['tools', { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }, 'tools'],
    ['tool_choice', { tool_choice: 'auto' }, 'tool_choice'],
    ['functions', { functions: [{ name: 'f' }] }, 'functions'],
    ['audio', { audio: { voice: 'alloy', format: 'wav' } }, 'audio'],
    ['modalities', { modalities: ['text', 'audio'] }, 'modalities.1'],
    ['prediction', { prediction: { type: 'content', content: 'x' } }, 'prediction'],
    ['reasoning_effort', { reasoning_effort: 'low' }, 'reasoning_effort'],
    ['store', { store: true }, 'store'],
    ['metadata', { metadata: { a: 'b' } }, 'metadata'],
    ['web_search_options', { web_search_options: {} }, 'web_search_options'],
    ['a message name', { messages: [{ role: 'user', content: 'hi', name: 'bob' }] }, 'messages.0.name'],
    ['a tool message', { messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }, 'messages.0.role'],
    ['top_logprobs without logprobs', { top_logprobs: 2 }, 'top_logprobs'],
    ['an unknown response format', { response_format: { type: 'yaml' } }, 'response_format.type'],
    ['a response_format the worker cannot compile', { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'nope' } } } }, 'response_format'],
  ];
  for (const [name, extra, param] of refusals) {
    it(`refuses ${name} with a 400 naming ${param}`, async () => {
      const error = await client.chat.completions.create({ ...chat, ...extra } as never).then(() => null, (err: unknown) => err);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
    });
  }

  it('refuses a field OpenAI does not know as OpenAI does, on both routes and inside objects', async () => {
    for (const [path, body, param] of [
      ['/v1/chat/completions', { ...chat, foo: 1 }, 'foo'],
      ['/v1/completions', { model: 'alpha', prompt: 'x', max_tokens: 2, frequency: 1 }, 'frequency'],
      ['/v1/chat/completions', { ...chat, stream_options: { include_usage: true, extra: 1 } }, 'stream_options.extra'],
      ['/v1/chat/completions', { ...chat, messages: [{ role: 'user', content: 'x', colour: 'red' }] }, 'messages.0.colour'],
    ] as const) {
      const r = await postJson(gw.url, path, key, body);
      expect(r.status).toBe(400);
      const error = r.body.error;
      expect(error.param).toBe(param);
      expect(error.message).toBe(`Unrecognized request argument supplied: ${param}`);
    }
  });
});

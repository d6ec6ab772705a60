// A worker killed mid-request (SIGKILL): its streams end with an error event, its non-streamed requests get a
// retryable 503, the other worker keeps serving, nothing hangs; restarted, the worker is taken back.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type EngineWorker, WORKER_START_MS, freePort, startWorker } from './helpers/engine.js';
import { OPERATOR_KEY, type TestGateway, jsonOf, postJson, readSse, startTestGateway, operatorFetch } from './helpers/gateway.js';
import { until } from './helpers/wait.js';

const tiny = inject('tinyDir');
const model = join(tiny, 'model');
let a: EngineWorker;
let b: EngineWorker;
let portA: number;
let gw: TestGateway;

// About 2 s on the tiny model. The bare backbone, so routing spreads by load alone (an adapter would draw
// requests to the worker that already holds it).
const LONG = { model: 'base', prompt: 'the cat', max_tokens: 1500, temperature: 0 };

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} hung for ${ms} ms`)), ms))]);
}

const workerState = (address: string) => gw.gateway.pool.workers.find((w) => w.address === address)!;

beforeAll(async () => {
  portA = await freePort();
  // 16 sequences each (the engine's default is 256): a burst of requests fills the adapter holder and spills over.
  [a, b] = await Promise.all([startWorker({ model, port: portA, maxLen: 2048, slots: 16 }), startWorker({ model, maxLen: 2048, slots: 16 })]);
  gw = await startTestGateway([a.address, b.address], { sharedAdapters: [{ name: 'alpha', dir: join(tiny, 'adapters/alpha') }] });
  await until(() => gw.gateway.pool.healthy().length === 2, 20_000, 'both workers healthy');
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([a?.stop('SIGKILL'), b?.stop('SIGKILL')]);
});

it('ends the dead worker\'s requests with errors and keeps serving on the other', async () => {
  const streams = Array.from({ length: 4 }, () =>
    fetch(`${gw.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...LONG, stream: true }),
    }),
  );
  const plain = Array.from({ length: 4 }, () => postJson(gw.url, '/v1/completions', OPERATOR_KEY, LONG));
  // Every stream has started (headers come after the first token) and all eight requests are running.
  const responses = await Promise.all(streams);
  for (const r of responses) expect(r.status).toBe(200);
  await until(() => gw.gateway.pool.workers.reduce((n, w) => n + w.inflight, 0) === 8, 5_000, 'all requests running');
  const onA = workerState(a.address).inflight;
  expect(onA).toBeGreaterThan(0);
  expect(onA).toBeLessThan(8);
  await a.stop('SIGKILL');

  const [sse, replies] = await withDeadline(Promise.all([Promise.all(responses.map(readSse)), Promise.all(plain)]), 20_000, 'requests on the killed worker');
  const broken = sse.filter((s) => s.errors.length > 0);
  const finished = sse.filter((s) => s.done);
  expect(broken.length + finished.length).toBe(4); // each stream either finished or failed, none hangs
  for (const s of broken) {
    expect(s.done).toBe(false);
    expect(s.chunks.length).toBeGreaterThan(0); // it was mid-stream
    expect(s.errors[0].error).toMatchObject({ type: 'service_unavailable', code: 'worker_unavailable' });
  }
  for (const s of finished) expect(s.chunks.at(-1).choices[0].finish_reason).toBe('length');
  const failedPlain = replies.filter((r) => r.status === 503);
  for (const r of failedPlain) {
    expect(r.body.error.type).toBe('service_unavailable');
    expect(r.headers.get('retry-after')).toBe('1');
  }
  for (const r of replies.filter((r) => r.status !== 503)) expect(r.status).toBe(200);
  // Only the dead worker's requests failed: every stream there (each had sent tokens), and the non-streamed
  // ones that had started producing; one still waiting for its first token is retried on the other worker.
  expect(broken.length + failedPlain.length).toBeLessThanOrEqual(onA);
  expect(broken.length + failedPlain.length).toBeGreaterThan(0);

  // The next requests go to the healthy worker.
  const next = await withDeadline(Promise.all(Array.from({ length: 6 }, () => postJson(gw.url, '/v1/completions', OPERATOR_KEY, { model: 'alpha', prompt: 'x', max_tokens: 3 }))), 20_000, 'requests after the kill');
  for (const r of next) expect(r.status).toBe(200);
  expect(workerState(a.address).healthy).toBe(false);
  const health = await jsonOf(await fetch(`${gw.url}/healthz`));
  expect(health).toEqual({ status: 'ok', workers: { healthy: 1, total: 2 } });
  const metrics = await (await operatorFetch(gw.url, '/metrics')).text();
  expect(metrics).toContain(`para_worker_up{worker="${a.address}"} 0`);
  expect(metrics).toContain(`para_worker_up{worker="${b.address}"} 1`);
});

it('takes a restarted worker back and pushes adapters to it again', async () => {
  a = await startWorker({ model, port: portA, maxLen: 2048, slots: 16 });
  await until(() => workerState(a.address).healthy, 20_000, 'worker A taken back');
  expect(workerState(a.address).adapters.size).toBe(0); // re-learned from the fresh worker: it holds nothing
  // Enough concurrent requests that both workers get some; every one succeeds.
  const replies = await Promise.all(Array.from({ length: 40 }, () => postJson(gw.url, '/v1/completions', OPERATOR_KEY, { model: 'alpha', prompt: 'the dog', max_tokens: 40, temperature: 0 })));
  for (const r of replies) expect(r.status).toBe(200);
  expect(new Set(replies.map((r) => r.body.choices[0].text)).size).toBe(1); // same greedy output from both workers
  expect(workerState(a.address).adapters.has('alpha@1')).toBe(true);
  expect((await jsonOf(await fetch(`${gw.url}/healthz`))).workers).toEqual({ healthy: 2, total: 2 });
}, WORKER_START_MS); // it starts a worker: a hook's allowance, not a test's

it('answers 503 while no worker is healthy, and /healthz says degraded', async () => {
  await Promise.all([a.stop('SIGKILL'), b.stop('SIGKILL')]);
  const r = await withDeadline(postJson(gw.url, '/v1/chat/completions', OPERATOR_KEY, { model: 'base', messages: [{ role: 'user', content: 'hi' }] }), 10_000, 'request with no workers');
  expect(r.status).toBe(503);
  expect(r.body.error.type).toBe('service_unavailable');
  await until(() => gw.gateway.pool.healthy().length === 0, 5_000, 'both workers out');
  const health = await fetch(`${gw.url}/healthz`);
  expect(health.status).toBe(503);
  expect((await jsonOf(health)).status).toBe('degraded');
});

// 500 concurrent streamed requests from 50 tenants, each with its own adapter, over 2 workers:
// every request completes exactly once with its own tenant's output, and the accounting adds up.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type EngineWorker, generateDirect, loadDirect, startWorker } from './helpers/engine.js';
import { type TestGateway, readSse, startTestGateway, tenantClient, tenantWithKey, operatorFetch } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const SOURCES = ['alpha', 'beta', 'gamma'] as const;
const TENANTS = 50;
const PER_TENANT = 10;
const messages = [{ role: 'user', content: 'the cat sat on the mat' }];
let workers: EngineWorker[];
let gw: TestGateway;
const tenants: { name: string; key: string; source: (typeof SOURCES)[number] }[] = [];
const expected = new Map<string, string>();

beforeAll(async () => {
  workers = await Promise.all([startWorker({ model: join(tiny, 'model') }), startWorker({ model: join(tiny, 'model') })]);
  gw = await startTestGateway(workers.map((w) => w.address));
  for (let i = 0; i < TENANTS; i++) {
    const name = `tenant-${String(i).padStart(2, '0')}`;
    const key = await tenantWithKey(gw.admin, name);
    const source = SOURCES[i % SOURCES.length]!;
    await tenantClient(gw.url, key).adapters.uploadDirectory(join(tiny, 'adapters', source), { name: 'bot' });
    tenants.push({ name, key, source });
  }
  for (const source of SOURCES) {
    await loadDirect(workers[0]!.address, `direct-${source}`, join(tiny, 'adapters', source));
    const direct = await generateDirect(workers[0]!.address, `direct-${source}`, { chat: { messages } }, { max_tokens: 4, temperature: 0 });
    expected.set(source, direct.text);
  }
  expect(new Set(expected.values()).size).toBe(3);
}, 240_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all((workers ?? []).map((w) => w.stop()));
});

it('completes 500 concurrent streams over 50 tenants, none lost or duplicated', async () => {
  const jobs = tenants.flatMap((t) =>
    Array.from({ length: PER_TENANT }, (_, k) => ({ tenant: t, tag: `${t.name}-${k}` })),
  );
  const started = performance.now();
  const results = await Promise.all(
    jobs.map(async ({ tenant, tag }) => {
      const response = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: `${tenant.name}/bot`, messages, max_tokens: 4, temperature: 0, stream: true, stream_options: { include_usage: true }, user: tag }),
      });
      expect(response.status).toBe(200);
      return { tenant, sse: await readSse(response) };
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const ids = new Set<string>();
  let completionTokens = 0;
  for (const { tenant, sse } of results) {
    expect(sse.errors).toEqual([]);
    expect(sse.done).toBe(true);
    const id = sse.chunks[0].id;
    for (const chunk of sse.chunks) expect(chunk.id).toBe(id); // one request's chunks only
    ids.add(id);
    const text = sse.chunks.flatMap((c) => c.choices.map((x: { delta: { content?: string } }) => x.delta.content ?? '')).join('');
    expect(text).toBe(expected.get(tenant.source));
    const finishes = sse.chunks.flatMap((c) => c.choices.filter((x: { finish_reason: string | null }) => x.finish_reason));
    expect(finishes.length).toBe(1);
    const usage = sse.chunks.at(-1).usage;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    completionTokens += usage.completion_tokens;
  }
  expect(ids.size).toBe(TENANTS * PER_TENANT); // no reply delivered twice

  const usage = await gw.admin.usage();
  expect(usage.length).toBe(TENANTS);
  for (const row of usage) expect(row.requests).toBe(PER_TENANT);
  expect(usage.reduce((a, r) => a + r.completion_tokens, 0)).toBe(completionTokens);
  // Both workers took part, and nothing is left in flight.
  const overview = await gw.admin.overview();
  for (const w of overview.workers) {
    expect(w.healthy).toBe(true);
    expect(w.inflight).toBe(0);
  }
  const metrics = await (await operatorFetch(gw.url, '/metrics')).text();
  const served = [...metrics.matchAll(/^para_requests_total\{[^}]*status="200"[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
  expect(served).toBe(TENANTS * PER_TENANT);
  console.log(`load: ${jobs.length} streams in ${seconds.toFixed(1)} s`);
}, 120_000);

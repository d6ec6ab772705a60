// A worker that is busy streaming but slow to answer its health checks must be kept, and its streams must
// finish; a worker that is slow to answer and delivers nothing must be taken out after repeated checks.
// The Python engine cannot be made slow on demand, so this file runs a small engine of its own over the
// real contract (proto/engine.proto), whose Health answers late on request.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestGateway, readSse, startTestGateway, tenantWithKey } from './helpers/gateway.js';
import { REPO_ROOT } from './helpers/paths.js';

const CHUNKS = 30;
const CHUNK_EVERY_MS = 50;

interface SlowEngine {
  address: string;
  healthDelayMs: number;
  close(): Promise<void>;
}

async function startSlowEngine(): Promise<SlowEngine> {
  const definition = protoLoader.loadSync(`${REPO_ROOT}proto/engine.proto`, { keepCase: true, longs: Number, defaults: true, oneofs: true });
  const Engine = (grpc.loadPackageDefinition(definition) as any).para.engine.v1.Engine;
  const server = new grpc.Server();
  const engine = { address: '', healthDelayMs: 0, close: () => new Promise<void>((done) => server.tryShutdown(() => done())) };
  server.addService(Engine.service, {
    Health: (_call: unknown, cb: grpc.sendUnaryData<object>) =>
      setTimeout(() => cb(null, { serving: true, model: 'slow', api_version: 1, max_context: 4096, slots: 8 }), engine.healthDelayMs),
    Stats: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { free_slots: 8 }),
    ListAdapters: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { adapters: [] }),
    Generate: (call: grpc.ServerWritableStream<any, object>) => {
      let sent = 0;
      const timer = setInterval(() => {
        sent += 1;
        const last = sent === CHUNKS;
        call.write({ request_id: call.request.request_id, token_ids: [sent], text: ` t${sent}`, logprobs: [],
                     finish_reason: last ? 'length' : '', usage: last ? { prompt_tokens: 3, completion_tokens: CHUNKS } : null });
        if (last) {
          clearInterval(timer);
          call.end();
        }
      }, CHUNK_EVERY_MS);
      call.on('cancelled', () => clearInterval(timer));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  engine.address = `127.0.0.1:${port}`;
  return engine;
}

describe('health checks of a busy worker', () => {
  let engine: SlowEngine;
  let gw: TestGateway;
  let key: string;

  beforeAll(async () => {
    engine = await startSlowEngine();
    // Checks every 100 ms that time out after 200 ms: a 600 ms answer fails three checks in well under a stream.
    gw = await startTestGateway([engine.address], { healthIntervalMs: 100, healthTimeoutMs: 200 });
    key = await tenantWithKey(gw.admin, 'acme');
  });

  afterAll(async () => {
    await gw?.close();
    await engine?.close();
  });

  it('keeps a worker whose streams deliver tokens, and its stream finishes', async () => {
    engine.healthDelayMs = 600;
    const response = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'base', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: CHUNKS }),
    });
    expect(response.status).toBe(200);
    const { chunks, errors, done } = await readSse(response);
    expect(errors).toEqual([]);
    expect(done).toBe(true);
    const text = chunks.map((c: any) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(Array.from({ length: CHUNKS }, (_, i) => ` t${i + 1}`).join(''));
    expect(gw.gateway.pool.healthy().map((w) => w.address)).toEqual([engine.address]);
  });

  it('takes out a worker that answers late and delivers nothing, and takes it back once it answers', async () => {
    engine.healthDelayMs = 600;
    await expect.poll(() => gw.gateway.pool.healthy().length, { timeout: 5000, interval: 50 }).toBe(0);
    engine.healthDelayMs = 0;
    await expect.poll(() => gw.gateway.pool.healthy().length, { timeout: 5000, interval: 50 }).toBe(1);
  });
});

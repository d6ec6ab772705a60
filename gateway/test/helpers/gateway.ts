// A gateway in the test process, on a free port, with an in-memory database and a temporary data dir.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Gateway, startGateway } from '../../src/app.js';
import type { GatewayOptions } from '../../src/config.js';
import { ParaClient } from '../../src/sdk/index.js';

export const OPERATOR_KEY = 'op-test-key-0123456789abcdef';

export interface TestGateway {
  gateway: Gateway;
  url: string;
  admin: ParaClient;
  close(): Promise<void>;
}

export async function startTestGateway(workers: string[], options: Partial<GatewayOptions> = {}, { waitForWorkers = true } = {}): Promise<TestGateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'para-gateway-data-'));
  const gateway = await startGateway({
    port: 0,
    workers,
    db: ':memory:',
    dataDir,
    operatorKey: OPERATOR_KEY,
    backbone: 'tiny',
    healthIntervalMs: 300,
    healthTimeoutMs: 2000,
    logLevel: 'warn',
    ...options,
  });
  if (workers.length > 0 && waitForWorkers) await gateway.pool.waitForHealthy(30_000);
  return {
    gateway,
    url: gateway.url,
    admin: new ParaClient({ baseUrl: gateway.url, apiKey: OPERATOR_KEY }),
    async close() {
      await gateway.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Creates a tenant and one key for it; returns the key. */
export async function tenantWithKey(admin: ParaClient, name: string, limits: { rpm?: number; tpm?: number } = {}): Promise<string> {
  await admin.tenants.create({ name, ...limits });
  return (await admin.keys.create(name)).key;
}

export const tenantClient = (url: string, key: string) => new ParaClient({ baseUrl: url, apiKey: key });

/** POST JSON with a key; returns status and parsed body. */
export async function postJson(url: string, path: string, key: string | undefined, body: unknown, raw = false) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(`${url}${path}`, { method: 'POST', headers, body: raw ? (body as string) : JSON.stringify(body) });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, body: json, text, headers: response.headers };
}

/** Reads an SSE response into its data payloads (parsed), error events and whether [DONE] came. */
export async function readSse(response: Response) {
  const text = await response.text();
  const events: { event: string | null; data: string }[] = [];
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    events.push({ event, data: data.join('\n') });
  }
  const done = events.some((e) => e.data === '[DONE]');
  const chunks = events.filter((e) => e.event === null && e.data !== '[DONE]').map((e) => JSON.parse(e.data));
  const errors = events.filter((e) => e.event === 'error').map((e) => JSON.parse(e.data));
  return { chunks, errors, done, text };
}

/** GET /metrics with the operator key (its labels name tenants, so it needs one). */
export const operatorFetch = (url: string, path: string) => fetch(`${url}${path}`, { headers: { authorization: `Bearer ${OPERATOR_KEY}` } });

/** A response body as loosely typed JSON, for assertions. */
export const jsonOf = async (response: Response): Promise<any> => response.json();

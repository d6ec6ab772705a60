// Schemathesis (the pinned Python package) against /openapi.json of a gateway on the tiny worker, for a bounded
// time: every generated request must get no 5xx, a documented status, the documented content type and a
// body that matches the documented schema. Half the generation requests name a model that exists (hooks.py),
// so the fuzzed values reach the engine.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { OPERATOR_KEY, type TestGateway, startTestGateway, tenantClient, tenantWithKey } from './helpers/gateway.js';
import { REPO_ROOT } from './helpers/paths.js';

const tiny = inject('tinyDir');
const SCHEMATHESIS = `${REPO_ROOT}.venv/bin/schemathesis`;
/** Seconds of fuzzing; CI's whole run stays far under its limit with this. */
const MAX_TIME_S = Number(process.env.PARA_FUZZ_SECONDS ?? 150);
const CHECKS = ['not_a_server_error', 'status_code_conformance', 'content_type_conformance', 'response_schema_conformance'];
let worker: EngineWorker;
let gw: TestGateway;

beforeAll(async () => {
  worker = await startWorker({ model: join(tiny, 'model'), maxLen: 512 });
  gw = await startTestGateway([worker.address], { sharedAdapters: [{ name: 'alpha', dir: join(tiny, 'adapters/alpha') }], logLevel: 'error' });
  const key = await tenantWithKey(gw.admin, 'acme');
  await tenantClient(gw.url, key).adapters.uploadDirectory(join(tiny, 'adapters/beta'), { name: 'support' });
});

afterAll(async () => {
  await gw?.close();
  await worker?.stop();
});

function schemathesis(args: string[], scratch: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(SCHEMATHESIS, args, {
      env: { ...process.env, PYTHONPATH: fileURLToPath(new URL('./fuzz/', import.meta.url)), SCHEMATHESIS_HOOKS: 'hooks', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: scratch, // schemathesis keeps a crash cache in its working directory
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

it('finds no 5xx and no response outside the OpenAPI document', async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'para-fuzz-'));
  const started = Date.now();
  const run = await schemathesis([
    'run', `${gw.url}/openapi.json`,
    '--checks', CHECKS.join(','),
    '--header', `Authorization: Bearer ${OPERATOR_KEY}`,
    '--max-time', String(MAX_TIME_S),
    '--workers', '1', // Python 3.11's ast module is not thread-safe, which schemathesis' workers trip over
    '--request-timeout', '60',
    '--no-color',
  ], scratch);
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const cases = /(\d+) generated, (.+)$/m.exec(run.output);
  console.log(`fuzz: ${cases ? `${cases[1]} cases, ${cases[2]}` : 'no case count'} in ${seconds} s`);
  if (run.code !== 0) console.log(run.output.slice(-20_000));
  rmSync(scratch, { recursive: true, force: true });
  expect(run.code).toBe(0);
  expect(Number(cases?.[1])).toBeGreaterThan(1000);
  expect(gw.gateway.pool.workers[0]!.healthy).toBe(true);
}, (MAX_TIME_S + 120) * 1000);

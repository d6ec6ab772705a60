// The platform command line, built (dist/platform/bin.js) and run as a subprocess against a real engine worker on the
// tiny model: serve prints working examples, chat and bench talk to it, admin manages it, SIGTERM stops it
// with its workers, and a restart finds the same keys.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { alive, cliEnv, runCli, type ServeProcess, startServe } from './helpers/cli.js';
import { postJson } from './helpers/gateway.js';

const tiny = inject('tinyDir');
const dataDir = mkdtempSync(join(tmpdir(), 'para-cli-data-'));
const serveArgs = () => ['--model', join(tiny, 'model'), '--adapter', `alpha=${join(tiny, 'adapters/alpha')}`, '--port', '0', '--data-dir', dataDir, '--slots', '8', '--max-len', '256'];
let serve: ServeProcess;

beforeAll(async () => {
  serve = await startServe(serveArgs());
});

afterAll(async () => {
  if (serve && serve.process.exitCode === null) {
    serve.process.kill('SIGKILL');
    for (const pid of serve.workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe('para serve', () => {
  it('prints examples whose key and request work, and keeps the keys private on disk', async () => {
    const { output } = serve;
    expect(serve.workerPids).toHaveLength(1);
    expect(Object.keys(serve.tenantKeys).sort()).toEqual(['acme', 'globex']);
    expect(output).toContain(`base_url="${serve.url}/v1"`);
    expect(output).toContain(`baseURL: '${serve.url}/v1'`);
    expect(output).toContain(`${serve.url}/dashboard/`);

    // The curl example, as printed: its key, its body, its URL.
    const curl = /curl -s (\S+) \\\n\s+-H "Authorization: Bearer (\S+)" \\\n.*\n\s+-d '(.*)'/.exec(output)!;
    expect(curl).not.toBeNull();
    const [, endpoint, key, body] = curl;
    expect(key).toBe(serve.tenantKeys.acme);
    const request = JSON.parse(body!);
    expect(request.model).toBe('alpha');
    const response = await fetch(endpoint!, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body! });
    expect(response.status).toBe(200);
    const chat = (await response.json()) as { model: string; usage: { completion_tokens: number } };
    expect(chat.model).toBe('alpha@1'); // the shared adapter's version that served it
    expect(chat.usage.completion_tokens).toBeGreaterThan(0);

    // Only the owner may read the stored keys; the stored operator key is the printed one and opens the admin API.
    for (const file of ['operator-key', 'demo-tenants.json']) expect(statSync(join(dataDir, file)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dataDir, 'operator-key'), 'utf8').trim()).toBe(serve.operatorKey);
    expect(JSON.parse(readFileSync(join(dataDir, 'demo-tenants.json'), 'utf8'))).toEqual(serve.tenantKeys);
    const tenants = await fetch(`${serve.url}/admin/v1/tenants`, { headers: { authorization: `Bearer ${serve.operatorKey}` } });
    expect(tenants.status).toBe(200);
  });

  it('fails clearly when the port is taken, the model is missing or Python cannot be found', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = String((blocker.address() as { port: number }).port);
    try {
      const busy = await runCli(['serve', ...serveArgs().slice(0, -6), '--port', port, '--data-dir', dataDir]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(busy.stdout).not.toContain('Starting'); // found before any worker was started
    } finally {
      blocker.close();
    }
    const noModel = await runCli(['serve', '--model', join(tiny, 'no-such-model'), '--port', '0', '--data-dir', dataDir]);
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toContain('no such directory');

    const noPython = await runCli(['serve', ...serveArgs()], cliEnv({ PARA_PYTHON: '/nonexistent/python3' }));
    expect(noPython.code).toBe(1);
    expect(noPython.stderr).toContain("Python '/nonexistent/python3' was not found");

    // A worker that starts but cannot load its model: its own error is shown.
    const badModel = await runCli(['serve', '--model', join(tiny, 'adapters/alpha'), '--port', '0', '--data-dir', dataDir]);
    expect(badModel.code).toBe(1);
    expect(badModel.stderr).toMatch(/engine worker 1 exited \(status \d+\) before serving; its last output:\n\s+\|/);
  });
});

describe('para chat, bench, admin against it', () => {
  it('admin and bench without an operator key say where to find one', async () => {
    for (const args of [['admin', 'usage', '--url', serve.url], ['bench', '--url', serve.url, '--requests', '1']]) {
      const run = await runCli(args);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('no operator key: pass --key KEY or set PARA_OPERATOR_KEY');
    }
  });

  it('chat --message prints the same answer as the gateway gives unstreamed and greedy', async () => {
    const key = serve.tenantKeys.globex!;
    const messages = [{ role: 'user', content: 'the cat sat on the mat' }];
    const direct = await postJson(serve.url, '/v1/chat/completions', key, { model: 'alpha', messages, max_tokens: 12, temperature: 0 });
    expect(direct.status).toBe(200);
    const answer: string = direct.body.choices[0].message.content;
    expect(answer.length).toBeGreaterThan(0);

    const run = await runCli(['chat', '--url', serve.url, '--model', 'alpha', '--message', messages[0]!.content, '--max-tokens', '12'], cliEnv({ PARA_API_KEY: key }));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${answer}\n`);

    const unknown = await runCli(['chat', '--url', serve.url, '--model', 'nope', '--message', 'hi', '--key', key]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/gateway answered 404/);
  });

  it('bench completes a multi-tenant load with no errors and writes sane JSON', async () => {
    const json = join(dataDir, 'bench.json');
    const run = await runCli(['bench', '--url', serve.url, '--key', serve.operatorKey, '--tenants', '4', '--requests', '48', '--concurrency', '12', '--max-tokens', '8', '--json', json]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/requests\/s .* tokens\/s .* errors 0/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report).toMatchObject({ ok: 48, errors: 0, config: { tenants: 4, requests: 48, concurrency: 12, max_tokens: 8, models: ['alpha'] } });
    expect(report.completion_tokens).toBeGreaterThan(0);
    expect(report.completion_tokens).toBeLessThanOrEqual(48 * 8);
    expect(report.requests_per_s).toBeGreaterThan(0);
    for (const kind of ['ttft', 'total'] as const) {
      const s = report.latency_ms[kind];
      expect(s.p50).toBeGreaterThan(0);
      expect(s.p50).toBeLessThanOrEqual(s.p90);
      expect(s.p90).toBeLessThanOrEqual(s.p99);
    }
    expect(report.latency_ms.ttft.p50).toBeLessThanOrEqual(report.latency_ms.total.p50);

    // The load was spread over the bench tenants, and their temporary keys were deleted afterwards.
    const usage = await runCli(['admin', 'usage', '--json', '--url', serve.url, '--key', serve.operatorKey]);
    const byTenant = Object.fromEntries(JSON.parse(usage.stdout).map((u: { tenant: string; requests: number }) => [u.tenant, u.requests]));
    expect([1, 2, 3, 4].map((i) => byTenant[`bench-0${i}`])).toEqual([12, 12, 12, 12]);
    const keys = await fetch(`${serve.url}/admin/v1/tenants/bench-01/keys`, { headers: { authorization: `Bearer ${serve.operatorKey}` } });
    expect(((await keys.json()) as { data: unknown[] }).data).toEqual([]);

    // A bench tenant whose limits were lowered since gets the bench's back: the run measures serving, not them.
    const lowered = await fetch(`${serve.url}/admin/v1/tenants/bench-01`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${serve.operatorKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rpm: 1 }),
    });
    expect(lowered.status).toBe(200);
    const again = await runCli(['bench', '--url', serve.url, '--key', serve.operatorKey, '--tenants', '1', '--requests', '6', '--max-tokens', '2']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/errors 0/);
  });

  it('admin creates a tenant and a key, uploads an adapter for it, and lists them', async () => {
    const op = ['--url', serve.url, '--key', serve.operatorKey];
    const created = await runCli(['admin', 'tenants', 'create', 'initech', '--rpm', '120', ...op]);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('tenant initech created (120 requests/min');
    const key = await runCli(['admin', 'keys', 'create', 'initech', '--json', ...op]);
    const tenantKey: string = JSON.parse(key.stdout).key;
    expect(tenantKey).toMatch(/^sk-para-/);

    const upload = await runCli(['admin', 'adapters', 'upload', 'helper', join(tiny, 'adapters/beta'), '--tenant', 'initech', ...op]);
    expect(upload.stderr).toBe('');
    expect(upload.stdout).toContain('adapter initech/helper version 1 uploaded');
    const list = await runCli(['admin', 'adapters', 'list', ...op]);
    expect(list.stdout).toMatch(/^initech\/helper\s+initech\s+1\s+\d+$/m);
    expect((await runCli(['admin', 'tenants', 'list', ...op])).stdout).toMatch(/^initech\s+120\s+200000/m);

    // The new tenant's key serves its new adapter; another tenant cannot see it.
    const own = await postJson(serve.url, '/v1/chat/completions', tenantKey, { model: 'initech/helper', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(own.status).toBe(200);
    const other = await postJson(serve.url, '/v1/chat/completions', serve.tenantKeys.acme, { model: 'initech/helper', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(other.status).toBe(404);

    const both = await runCli(['admin', 'adapters', 'upload', 'x', join(tiny, 'adapters/beta'), '--tenant', 'initech', '--shared', ...op]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of --tenant T and --shared');
    const wrongKey = await runCli(['admin', 'tenants', 'list', '--url', serve.url, '--key', serve.tenantKeys.acme!]);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/gateway answered 403/);
  });

  it('every command has --help', async () => {
    for (const command of ['serve', 'chat', 'bench', 'admin']) {
      const run = await runCli([command, '--help']);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(new RegExp(`^Usage: para ${command}`));
    }
    const unknownFlag = await runCli(['bench', '--tenant', '3']);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toContain("Unknown option '--tenant'");
  });
});

describe('stopping and starting again', () => {
  it('SIGTERM stops the gateway and its worker; a restart keeps the keys', async () => {
    const { url, workerPids, operatorKey, tenantKeys } = serve;
    expect(workerPids.every(alive)).toBe(true);
    serve.process.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
    expect(workerPids.filter(alive)).toEqual([]);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();

    const again = await startServe(serveArgs());
    try {
      expect(again.operatorKey).toBe(operatorKey);
      expect(again.tenantKeys).toEqual(tenantKeys);
      expect(again.output).not.toContain('(new');
      // The registry survived too: initech's upload is still there.
      const models = await fetch(`${again.url}/v1/adapters`, { headers: { authorization: `Bearer ${operatorKey}` } });
      expect(JSON.stringify(await models.json())).toContain('initech/helper');
    } finally {
      again.process.kill('SIGINT');
      expect(await again.exited).toBe(0);
      expect(again.workerPids.filter(alive)).toEqual([]);
    }
  });
});

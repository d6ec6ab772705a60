#!/usr/bin/env node
// The gateway's own cost: the same generation asked of an engine directly over gRPC and through the gateway
// (chat completions, non-streamed and streamed). (a) against a trivially fast engine (a gRPC server in this
// file that streams a fixed handful of tokens at once), so whatever latency and throughput limit remains is
// the gateway's; (b) against a real engine worker on the tiny random model, for context.
//
//   node benchmarks/gateway/overhead.mjs [--quick]      (after `npm run build` in gateway/; --quick: a short
//                                                        run that writes no JSON)
//
// Writes benchmarks/gateway/overhead.json and prints a table. The engine, the gateway and the load generator
// run as three processes on this machine, so at high concurrency they share its cores.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism, cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { GATEWAY, ROOT, adopt, TOKENS, directCall, engineService, freePort, grpc, httpCall, latency, rate, round, startProcess, stop } from './harness.mjs';

const { ParaClient } = await import(join(GATEWAY, 'dist', 'sdk', 'index.js'));

const QUICK = process.argv.includes('--quick');
const OPERATOR_KEY = 'bench-operator-key-0123456789';

// ---- the fake engine (runs in its own process: `overhead.mjs --fake-engine`) ----

function runFakeEngine() {
  const server = new grpc.Server();
  let finished = 0;
  server.addService(engineService().service, {
    Health: (_call, cb) => cb(null, { serving: true, model: 'fake', api_version: 1, max_context: 4096, slots: 4096 }),
    ListAdapters: (_call, cb) => cb(null, { adapters: [] }),
    Stats: (_call, cb) => cb(null, { running: 0, waiting: 0, free_slots: 4096, requests_finished: finished, tokens_generated: finished * TOKENS, adapters_loaded: 0 }),
    LoadAdapter: (call, cb) => cb(null, { name: call.request.name, parameters: 1, base_model: 'fake' }),
    UnloadAdapter: (_call, cb) => cb(null, {}),
    Generate: (call) => {
      const n = Math.max(1, Math.min(TOKENS, call.request.sampling?.max_tokens || TOKENS));
      for (let i = 0; i < n; i++) {
        const last = i === n - 1;
        call.write({
          request_id: call.request.request_id, token_ids: [100 + i], text: ` tok${i}`, logprobs: [],
          finish_reason: last ? 'length' : '', usage: last ? { prompt_tokens: 12, completion_tokens: n } : null,
        });
      }
      finished += 1;
      call.end();
    },
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    console.log(`engine serving fake on 127.0.0.1:${port} (instant)`);
  });
}

// ---- processes ----


async function startGatewayProcess(worker) {
  const dataDir = mkdtempSync(join(tmpdir(), 'para-overhead-'));
  const port = await freePort();
  // --log-level warn, as `para serve` runs it: at info the gateway logs every request, and the benchmark
  // would measure pino as much as the gateway.
  const child = spawn(
    process.execPath,
    [join(GATEWAY, 'dist', 'main.js'), '--port', String(port), '--worker', worker, '--db', join(dataDir, 'gw.db'), '--data-dir', dataDir, '--operator-key', OPERATOR_KEY, '--log-level', 'warn'],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  adopt(child);
  const url = `http://127.0.0.1:${port}`;
  const healthy = async () => (await fetch(`${url}/healthz`).catch(() => null))?.status === 200;
  for (let i = 0; !(await healthy()); i++) {
    if (i > 200 || child.exitCode !== null) throw new Error('the gateway did not become healthy');
    await new Promise((r) => setTimeout(r, 100));
  }
  const admin = new ParaClient({ baseUrl: url, apiKey: OPERATOR_KEY });
  await admin.tenants.create({ name: 'bench', rpm: 100_000_000, tpm: 1_000_000_000 });
  const { key } = await admin.keys.create('bench');
  return { url, key, child, close: async () => { await stop(child); rmSync(dataDir, { recursive: true, force: true }); } };
}

// ---- one request of each kind ----


// ---- measurements ----

async function measure(label, worker, plan) {
  const Engine = engineService();
  const grpcClient = new Engine(worker, grpc.credentials.createInsecure());
  const gw = await startGatewayProcess(worker);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
  const paths = {
    direct_grpc: () => directCall(grpcClient),
    gateway_chat: () => httpCall(agent, gw.url, gw.key, false),
    gateway_chat_stream: () => httpCall(agent, gw.url, gw.key, true),
  };
  const result = { engine: label, worker, tokens_per_request: TOKENS, latency: {}, added_latency_ms: {}, throughput: {} };
  try {
    for (const [name, send] of Object.entries(paths)) {
      process.stderr.write(`${label}: ${name} latency…\n`);
      result.latency[name] = await latency(send, plan.latencyRequests, plan.warmup);
    }
    for (const name of ['gateway_chat', 'gateway_chat_stream']) {
      result.added_latency_ms[name] = {
        p50: round(result.latency[name].p50_ms - result.latency.direct_grpc.p50_ms),
        p99: round(result.latency[name].p99_ms - result.latency.direct_grpc.p99_ms),
      };
    }
    for (const [name, send] of Object.entries(paths)) {
      result.throughput[name] = [];
      for (const c of plan.concurrency) {
        process.stderr.write(`${label}: ${name} at concurrency ${c}…\n`);
        result.throughput[name].push(await rate(send, c, plan.seconds));
      }
    }
  } finally {
    agent.destroy();
    grpcClient.close();
    await gw.close();
  }
  return result;
}

function table(results) {
  const lines = [];
  for (const r of results) {
    lines.push(`\n${r.engine} engine (${r.tokens_per_request} tokens per request)`);
    lines.push('  latency, one request at a time     p50 ms    p99 ms   added p50   added p99');
    for (const [name, l] of Object.entries(r.latency)) {
      const added = r.added_latency_ms[name];
      lines.push(`  ${name.padEnd(32)}${l.p50_ms.toFixed(2).padStart(9)}${l.p99_ms.toFixed(2).padStart(10)}${(added ? added.p50.toFixed(2) : '—').padStart(12)}${(added ? added.p99.toFixed(2) : '—').padStart(12)}`);
    }
    const levels = r.throughput.direct_grpc.map((t) => t.concurrency);
    lines.push(`  requests/s at concurrency       ${levels.map((c) => String(c).padStart(9)).join('')}`);
    for (const [name, rows] of Object.entries(r.throughput)) {
      lines.push(`  ${name.padEnd(32)}${rows.map((t) => t.requests_per_s.toFixed(0).padStart(9)).join('')}${rows.some((t) => t.errors) ? `  (errors: ${rows.map((t) => t.errors).join('/')})` : ''}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function main() {
  if (process.argv.includes('--fake-engine')) return runFakeEngine();
  const plan = QUICK
    ? { fake: { latencyRequests: 200, warmup: 50, concurrency: [1, 8, 32], seconds: 1 }, real: { latencyRequests: 20, warmup: 3, concurrency: [1, 8], seconds: 2 } }
    : { fake: { latencyRequests: 1000, warmup: 200, concurrency: [1, 8, 32, 128], seconds: 4 }, real: { latencyRequests: 60, warmup: 5, concurrency: [1, 8, 32], seconds: 4 } };
  const results = [];

  const fake = await startProcess(process.execPath, [import.meta.filename, '--fake-engine'], /engine serving fake on (\S+) /);
  results.push(await measure('fake (instant)', fake.match[1], plan.fake));
  await stop(fake.child);

  const tinyDir = mkdtempSync(join(tmpdir(), 'para-overhead-tiny-'));
  const python = join(ROOT, '.venv', 'bin', 'python');
  try {
    execFileSync(python, [join(ROOT, 'tests', 'make_tiny_worker.py'), tinyDir], { stdio: 'ignore' });
    const real = await startProcess(
      python,
      ['-m', 'parapeft.cli.main', 'engine', '--model', join(tinyDir, 'model'), '--port', '0', '--device', 'cpu', '--slots', '32', '--max-len', '256'],
      /engine serving .* on (\S+) \(/,
      { ...process.env, OMP_NUM_THREADS: '1' },
    );
    results.push(await measure('tiny-model Python', real.match[1], plan.real));
    await stop(real.child);
  } finally {
    rmSync(tinyDir, { recursive: true, force: true });
  }

  const report = {
    command: `node benchmarks/gateway/overhead.mjs${QUICK ? ' --quick' : ''}`,
    date: new Date().toISOString(),
    machine: { platform: `${platform()} ${release()}`, cpus: availableParallelism(), cpu_model: cpus()[0]?.model ?? 'unknown', memory_gib: round(totalmem() / 2 ** 30, 1) },
    node: process.version,
    notes: 'engine, gateway (node gateway/dist/main.js, --log-level warn) and load generator are separate processes on one machine; HTTP over keep-alive node:http, gRPC over @grpc/grpc-js; model "base" (no adapter); added latency = gateway - direct gRPC',
    results,
  };
  if (!QUICK) writeFileSync(join(import.meta.dirname, 'overhead.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(table(results));
  process.exit(0);
}

await main();

#!/usr/bin/env node
// One gateway replica against two, both on one PostgreSQL, in front of two instant fake engines (the gRPC
// server of overhead.mjs), with the load spread round-robin over the replicas as a load balancer would. Also
// one replica on SQLite, the embedded default, for reference. What is measured is the gateway's own cost:
// latency one request at a time (added = gateway - direct gRPC to an engine) and requests/s under load.
//
//   node benchmarks/gateway/replicas.mjs [--quick]     (after `npm run build` in gateway/; needs Debian's
//                                                       postgresql package: `make postgres`)
//
// Writes benchmarks/gateway/replicas.json (not with --quick) and prints a table. Everything (PostgreSQL, the
// engines, the replicas, the load generator) runs on this one machine and shares its cores.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { GATEWAY, ROOT, adopt, directCall, engineService, freePort, gatewayRequire, grpc, httpCall, latency, rate, round, startProcess, stop } from './harness.mjs';

const pg = gatewayRequire('pg');
const { ParaClient } = await import(join(GATEWAY, 'dist', 'sdk', 'index.js'));

const QUICK = process.argv.includes('--quick');
const OPERATOR_KEY = 'bench-operator-key-0123456789';
const PLAN = QUICK
  ? { latencyRequests: 100, warmup: 30, concurrency: [8, 32], seconds: 1 }
  : { latencyRequests: 600, warmup: 100, concurrency: [1, 8, 32, 128], seconds: 5 };


// ---- a private PostgreSQL cluster (as gateway/test/helpers/postgres.ts starts it) ----

async function startPostgres() {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`)) : [];
  if (versions.length === 0) throw new Error('PostgreSQL is not installed: run `make postgres` (apt-get install postgresql)');
  const bin = `/usr/lib/postgresql/${versions.sort((a, b) => b - a)[0]}/bin`;
  const root = process.getuid?.() === 0;
  const run = (cmd, args) => {
    const [file, argv] = root ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    const r = spawnSync(file, argv, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  };
  const dir = mkdtempSync(join(tmpdir(), 'para-bench-pg-'));
  if (root) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres'])), Number(execFileSync('id', ['-g', 'postgres'])));
  const port = await freePort();
  run(`${bin}/initdb`, ['-D', `${dir}/data`, '-U', 'para', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  // Durable settings (fsync on, the default): a replica's usage must survive a crash of the database host.
  run(`${bin}/pg_ctl`, ['-D', `${dir}/data`, '-l', `${dir}/log`, '-o', `-c listen_addresses=127.0.0.1 -c port=${port} -k ${dir} -c max_connections=200`, '-w', 'start']);
  let n = 0;
  return {
    async database() {
      const name = `bench_${n++}`;
      const client = new pg.Client({ connectionString: `postgres://para@127.0.0.1:${port}/postgres` });
      await client.connect();
      await client.query(`CREATE DATABASE ${name}`);
      await client.end();
      return `postgres://para@127.0.0.1:${port}/${name}`;
    },
    stop() {
      run(`${bin}/pg_ctl`, ['-D', `${dir}/data`, '-m', 'fast', '-w', 'stop']);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- gateway replicas ----

async function startReplica(db, dataDir, workers) {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [join(GATEWAY, 'dist', 'main.js'), '--port', String(port), ...workers.flatMap((w) => ['--worker', w]), '--db', db, '--data-dir', dataDir, '--operator-key', OPERATOR_KEY, '--log-level', 'warn'],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  adopt(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; (await fetch(`${url}/readyz`).catch(() => null))?.status !== 200; i++) {
    if (i > 300 || child.exitCode !== null) throw new Error('a replica did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child };
}

async function startDeployment(label, db, replicas, workers) {
  const dataDir = mkdtempSync(join(tmpdir(), 'para-bench-replicas-'));
  // One at a time, so the first runs the migrations; the others find them done.
  const started = [];
  for (let i = 0; i < replicas; i++) started.push(await startReplica(db, dataDir, workers));
  const admin = new ParaClient({ baseUrl: started[0].url, apiKey: OPERATOR_KEY });
  await admin.tenants.create({ name: 'bench', rpm: 100_000_000, tpm: 1_000_000_000 });
  const { key } = await admin.keys.create('bench');
  return {
    label, key, urls: started.map((r) => r.url),
    usage: async () => (await admin.usage()).find((u) => u.tenant === 'bench'),
    close: async () => {
      for (const r of started) await stop(r.child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---- requests ----


async function measure(deployment, direct) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
  let next = 0;
  // Round-robin over the replicas, one request each in turn, as a load balancer would spread them.
  const send = () => httpCall(agent, deployment.urls[next++ % deployment.urls.length], deployment.key);
  try {
    process.stderr.write(`${deployment.label}: latency…\n`);
    const lat = await latency(send, PLAN.latencyRequests, PLAN.warmup);
    const throughput = [];
    for (const c of PLAN.concurrency) {
      process.stderr.write(`${deployment.label}: concurrency ${c}…\n`);
      throughput.push(await rate(send, c, PLAN.seconds));
    }
    const sent = PLAN.warmup + PLAN.latencyRequests + throughput.reduce((s, t) => s + t.requests, 0);
    const usage = await deployment.usage();
    return {
      deployment: deployment.label,
      replicas: deployment.urls.length,
      latency: lat,
      added_latency_ms: { p50: round(lat.p50_ms - direct.p50_ms, 3), p99: round(lat.p99_ms - direct.p99_ms, 3) },
      throughput,
      // Every answered request is counted once, whichever replica served it.
      usage_check: { answered: sent, recorded: usage?.requests ?? 0 },
    };
  } finally {
    agent.destroy();
  }
}

function table(direct, results) {
  const lines = [`direct gRPC to a fake engine: p50 ${direct.p50_ms.toFixed(2)} ms, p99 ${direct.p99_ms.toFixed(2)} ms`, ''];
  const levels = PLAN.concurrency;
  lines.push(`${'deployment'.padEnd(36)}${'p50 ms'.padStart(8)}${'p99 ms'.padStart(8)}${'+p50'.padStart(8)}${'+p99'.padStart(8)}   requests/s at ${levels.join(' / ')}`);
  for (const r of results) {
    lines.push(
      `${r.deployment.padEnd(36)}${r.latency.p50_ms.toFixed(2).padStart(8)}${r.latency.p99_ms.toFixed(2).padStart(8)}${r.added_latency_ms.p50.toFixed(2).padStart(8)}${r.added_latency_ms.p99.toFixed(2).padStart(8)}   ${r.throughput.map((t) => t.requests_per_s.toFixed(0)).join(' / ')}` +
        `${r.throughput.some((t) => t.errors) ? `  (errors ${r.throughput.map((t) => t.errors).join('/')})` : ''}`,
    );
  }
  lines.push('', 'p50/p99 under load (ms) at each concurrency:');
  for (const r of results) lines.push(`  ${r.deployment.padEnd(34)}${r.throughput.map((t) => `${t.p50_ms}/${t.p99_ms}`).join('   ')}`);
  return `${lines.join('\n')}\n`;
}

async function main() {
  // The machine may be shared: its load before and after goes into the report, to read the figures by.
  const loadBefore = loadavg().map((v) => round(v));
  const fakeScript = join(import.meta.dirname, 'overhead.mjs');
  const engines = [];
  for (let i = 0; i < 2; i++) engines.push(await startProcess(process.execPath, [fakeScript, '--fake-engine'], /engine serving fake on (\S+) /));
  const workers = engines.map((e) => e.match[1]);
  const Engine = engineService();
  const client = new Engine(workers[0], grpc.credentials.createInsecure());
  const direct = await latency(() => directCall(client), PLAN.latencyRequests, PLAN.warmup);
  client.close();

  const postgres = await startPostgres();
  const results = [];
  try {
    const sqliteDir = mkdtempSync(join(tmpdir(), 'para-bench-sqlite-'));
    const plans = [
      ['1 replica, SQLite (embedded)', join(sqliteDir, 'gw.db'), 1],
      ['1 replica, PostgreSQL', await postgres.database(), 1],
      ['2 replicas, one PostgreSQL', await postgres.database(), 2],
    ];
    for (const [label, db, replicas] of plans) {
      const deployment = await startDeployment(label, db, replicas, workers);
      try {
        results.push(await measure(deployment, direct));
      } finally {
        await deployment.close();
      }
    }
    rmSync(sqliteDir, { recursive: true, force: true });
  } finally {
    postgres.stop();
    for (const e of engines) await stop(e.child);
  }

  const report = {
    command: `node benchmarks/gateway/replicas.mjs${QUICK ? ' --quick' : ''}`,
    date: new Date().toISOString(),
    machine: { platform: `${platform()} ${release()}`, cpus: availableParallelism(), cpu_model: cpus()[0]?.model ?? 'unknown', memory_gib: round(totalmem() / 2 ** 30, 1) },
    node: process.version,
    load_average_1_5_15_min: { before: loadBefore, after: loadavg().map((v) => round(v)) },
    notes:
      'two instant fake engines (overhead.mjs --fake-engine), gateway replicas as node gateway/dist/main.js --log-level warn, PostgreSQL 15 (a private cluster, fsync on) and the load generator all on this machine; non-streamed chat completions, model "base", 8 tokens; requests round-robin over the replicas over keep-alive node:http; added latency = gateway - direct gRPC to one engine, one request at a time',
    plan: PLAN,
    direct_grpc: direct,
    results,
  };
  if (!QUICK) writeFileSync(join(import.meta.dirname, 'replicas.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(table(direct, results));
  process.exit(0);
}

await main();

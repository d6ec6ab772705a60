// What the gateway benchmarks share: child processes, a fake engine's gRPC service definition, one request
// sent directly to an engine or through a gateway, and the two measurements (latency one request at a time,
// requests/s under a concurrent load).
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GATEWAY = join(ROOT, 'gateway');
const PROTO = join(ROOT, 'proto', 'engine.proto');
// gRPC comes from the gateway's own dependencies: the benchmarks add none.
export const gatewayRequire = createRequire(join(GATEWAY, 'package.json'));
export const grpc = gatewayRequire('@grpc/grpc-js');
const protoLoader = gatewayRequire('@grpc/proto-loader');

/** Tokens a request asks for (and the fake engine streams). */
export const TOKENS = 8;
const MESSAGES = [{ role: 'user', content: 'the cat sat on the mat' }];

export function engineService() {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(definition).para.engine.v1.Engine;
}

// ---- processes ----

const children = new Set();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

/** Kills `child` when this process exits, however it exits. */
export function adopt(child) {
  children.add(child);
  return child;
}

/** Starts a process and resolves with the first stdout line matching `pattern`. */
export function startProcess(command, args, pattern, env = process.env) {
  const child = adopt(spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-3000)));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${command} ${args.join(' ')} exited (${code}):\n${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = pattern.exec(line);
      if (match) resolve({ child, match });
    });
  });
}

export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  children.delete(child);
}

export function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// ---- one request ----

/** The chat asked of an engine directly over gRPC; resolves with the tokens received. */
export function directCall(client) {
  return new Promise((resolve, reject) => {
    const call = client.Generate({ request_id: 'r', adapter: '', chat: { messages: MESSAGES }, sampling: { max_tokens: TOKENS, temperature: 0, ignore_eos: true } });
    let tokens = 0;
    call.on('data', (chunk) => (tokens += chunk.token_ids.length));
    call.on('error', reject);
    call.on('end', () => resolve(tokens));
  });
}

/** The same chat through a gateway (`stream`: as server-sent events); resolves with the reply's length. */
export function httpCall(agent, url, key, stream = false) {
  const body = JSON.stringify({ model: 'base', messages: MESSAGES, max_tokens: TOKENS, temperature: 0, stream });
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/chat/completions`, {
      method: 'POST', agent,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(text.length) : reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ---- measurements ----

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
export const round = (v, d = 3) => Math.round(v * 10 ** d) / 10 ** d;

/** `count` requests one after another (after `warmup`): per-request latency in ms. */
export async function latency(send, count, warmup) {
  for (let i = 0; i < warmup; i++) await send();
  const times = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await send();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { requests: count, p50_ms: round(pct(times, 50)), p99_ms: round(pct(times, 99)), mean_ms: round(times.reduce((a, b) => a + b, 0) / count) };
}

/** `concurrency` loops sending for `seconds`: completed requests per second, and latency under that load. */
export async function rate(send, concurrency, seconds) {
  const until = performance.now() + seconds * 1000;
  const times = [];
  let errors = 0;
  const loop = async () => {
    while (performance.now() < until) {
      const t = performance.now();
      try {
        await send();
        times.push(performance.now() - t);
      } catch {
        errors += 1;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const wall = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return { concurrency, requests: times.length, requests_per_s: round(times.length / wall, 1), p50_ms: round(pct(times, 50), 2), p99_ms: round(pct(times, 99), 2), errors };
}

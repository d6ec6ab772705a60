// Real engine workers (`para engine` on the CPU) for tests: start, kill, restart, and direct gRPC calls.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { EngineClient } from '../../src/workers/client.js';
import type { EngineInput } from '../../src/generation.js';
import { loadEngineService } from '../../src/workers/proto.js';
import type { GenerateChunk, SamplingParams } from '../../src/workers/proto.js';
import { PARA, REPO_ROOT } from './paths.js';

export interface WorkerOptions {
  model: string;
  adapters?: Record<string, string>;
  port?: number;
  slots?: number;
  maxLen?: number;
}

export interface EngineWorker {
  address: string;
  port: number;
  process: ChildProcess;
  /** Stops it: SIGTERM (graceful) by default, SIGKILL to simulate a crash. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** How long a test that starts a worker in its body may take: the hooks' allowance (vitest.config.ts). */
export const WORKER_START_MS = 180_000;

export function startWorker(options: WorkerOptions): Promise<EngineWorker> {
  const args = ['engine', '--model', options.model, '--port', String(options.port ?? 0), '--device', 'cpu'];
  for (const [name, dir] of Object.entries(options.adapters ?? {})) args.push('--adapter', `${name}=${dir}`);
  if (options.slots) args.push('--slots', String(options.slots));
  if (options.maxLen) args.push('--max-len', String(options.maxLen));
  const child = spawn(PARA, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', TOKENIZERS_PARALLELISM: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    running.delete(child);
    resolve();
  }));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`engine worker did not start in time:\n${stderr}`));
    }, 150_000);
    let serving = false;
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!serving) reject(new Error(`engine worker exited (${code}) before serving:\n${stderr}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = /engine serving .* on (\S+):(\d+) /.exec(line);
      if (!match) return;
      clearTimeout(timer);
      serving = true;
      const port = Number(match[2]);
      resolve({
        address: `${match[1]}:${port}`,
        port,
        process: child,
        async stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    });
  });
}

/** Calls a worker directly over gRPC, bypassing the gateway, and returns the whole completion. */
export async function generateDirect(address: string, adapter: string, input: EngineInput, sampling: SamplingParams) {
  const client = new EngineClient(address, loadEngineService(`${REPO_ROOT}proto/engine.proto`));
  try {
    const call = client.generate({ request_id: 'direct', adapter, ...input, sampling });
    let text = '';
    let last: GenerateChunk | undefined;
    const tokenIds: number[] = [];
    const logprobs: number[] = [];
    const topLogprobs: GenerateChunk['top_logprobs'] = [];
    for await (const chunk of call as AsyncIterable<GenerateChunk>) {
      text += chunk.text;
      tokenIds.push(...chunk.token_ids);
      logprobs.push(...chunk.logprobs);
      topLogprobs.push(...chunk.top_logprobs);
      last = chunk;
    }
    return { text, tokenIds, logprobs, topLogprobs, finishReason: last?.finish_reason, usage: last?.usage };
  } finally {
    client.close();
  }
}

/** Loads an adapter directory onto a worker directly (for comparisons with the gateway's output). */
export async function loadDirect(address: string, name: string, path: string): Promise<void> {
  const client = new EngineClient(address, loadEngineService(`${REPO_ROOT}proto/engine.proto`));
  try {
    await client.loadAdapter({ name, path }, 30_000);
  } finally {
    client.close();
  }
}

/** A worker's Stats, read directly. */
export async function statsDirect(address: string) {
  const client = new EngineClient(address, loadEngineService(`${REPO_ROOT}proto/engine.proto`));
  try {
    return await client.stats(10_000);
  } finally {
    client.close();
  }
}

/** The adapter names a worker holds, read directly. */
export async function adaptersDirect(address: string): Promise<string[]> {
  const client = new EngineClient(address, loadEngineService(`${REPO_ROOT}proto/engine.proto`));
  try {
    return (await client.listAdapters(10_000)).map((a) => a.name);
  } finally {
    client.close();
  }
}

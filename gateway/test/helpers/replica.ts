// A gateway replica as its own process (`node dist/main.js`, the server's one entry point), so a test can kill
// it with SIGKILL the way a machine or an OOM killer would.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ParaClient } from '../../src/sdk/index.js';
import { OPERATOR_KEY } from './gateway.js';

export const GATEWAY_MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export interface Replica {
  url: string;
  process: ChildProcess;
  admin: ParaClient;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export function startReplica(args: string[]): Promise<Replica> {
  const child = spawn(process.execPath, [GATEWAY_MAIN, '--port', '0', '--log-level', 'info', '--operator-key', OPERATOR_KEY, ...args], {
    env: { ...process.env, PARA_OPERATOR_KEY: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running.delete(child);
      resolve();
    }),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway replica did not start in time:\n${stderr}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway replica exited (${code}) before listening:\n${stderr}`));
    });
    // pino writes one JSON object per line; the server logs its URL once it listens.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: { msg?: string; url?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg !== 'gateway listening' || !entry.url) return;
      clearTimeout(timer);
      resolve({
        url: entry.url,
        process: child,
        admin: new ParaClient({ baseUrl: entry.url, apiKey: OPERATOR_KEY }),
        exited,
        async stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    });
  });
}

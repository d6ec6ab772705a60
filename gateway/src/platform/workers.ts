// Engine workers as child processes of `para serve`: start them, wait for their ready lines, stop them.
// Every worker is killed when this process ends, however it ends, so none is left running on its own.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CliError } from './args.js';

export interface WorkerSpec {
  python: string;
  model: string;
  device?: string;
  slots?: number;
  maxLen?: number;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Added to `env` for worker i (its CUDA_VISIBLE_DEVICES, from placement.ts); kept across its restarts. */
  workerEnv?: Record<string, string>[];
}

export interface RunningWorker {
  address: string;
  pid: number;
  process: ChildProcess;
  /** The last lines the worker wrote to stderr (for error messages). */
  stderrTail(): string;
}

/** Printed by `para engine` once its gRPC server listens: "engine serving MODEL on HOST:PORT (...)". */
const READY_LINE = /^engine serving .* on (\S+):(\d+) \(/;
const STDERR_KEEP = 6000;
/** Loading a model the first time converts it into the cache; allow for a slow disk. */
const START_TIMEOUT_MS = 300_000;

const children = new Set<ChildProcess>();
// A last resort: whatever path the process takes to its end (an exception, process.exit), no worker outlives it.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export const liveWorkerPids = (): number[] => [...children].map((c) => c.pid!).filter(Boolean);

function tailLines(text: string, lines = 25): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Starts worker `index`; on `port` (a restart keeps its address, which the gateway knows), else on a free one. */
export function startWorker(spec: WorkerSpec, index: number, port = 0): Promise<RunningWorker> {
  // --exit-with-parent: a worker stops by itself if this process dies without a chance to stop it (SIGKILL).
  const args = ['-m', 'parapeft.cli.main', 'engine', '--model', spec.model, '--port', String(port), '--exit-with-parent'];
  if (spec.device) args.push('--device', spec.device);
  if (spec.slots) args.push('--slots', String(spec.slots));
  if (spec.maxLen) args.push('--max-len', String(spec.maxLen));
  const env = { ...spec.env, ...(spec.workerEnv?.[index] ?? {}) };
  const child = spawn(spec.python, args, { cwd: spec.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  // Both pipes are read for the worker's whole life: a full pipe would block it mid-write.
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-STDERR_KEEP);
  });
  child.once('exit', () => children.delete(child));
  const label = `engine worker ${index + 1}`;

  return new Promise((resolve, reject) => {
    let ready = false;
    const fail = (message: string) => {
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      const tail = tailLines(stderr);
      reject(new CliError(`${label} ${message}${tail ? `; its last output:\n${tail.replace(/^/gm, '  | ')}` : ''}`));
    };
    const timer = setTimeout(() => fail(`did not report ready within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        fail(`could not start: Python '${spec.python}' was not found (set PARA_PYTHON, or run through \`para serve\`)`);
      } else fail(`could not start: ${err.message}`);
    });
    // 'close' rather than 'exit': it comes after the pipes are drained, so the stderr tail is complete.
    child.once('close', (code, signal) => {
      if (!ready) fail(`exited (${signal ?? `status ${code}`}) before serving`);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = READY_LINE.exec(line);
      if (ready || !match) return;
      ready = true;
      clearTimeout(timer);
      resolve({ address: `${match[1]}:${match[2]}`, pid: child.pid!, process: child, stderrTail: () => tailLines(stderr) });
    });
  });
}

/** Starts `count` workers at once; at the first failure the others are stopped and that failure thrown. */
export async function startWorkers(spec: WorkerSpec, count: number): Promise<RunningWorker[]> {
  try {
    return await Promise.all(Array.from({ length: count }, (_, i) => startWorker(spec, i)));
  } catch (err) {
    await stopAllWorkers();
    throw err;
  }
}

/**
 * Stops every worker this process started (also those still loading): SIGTERM, on which a worker drains and
 * exits, then SIGKILL for any still running after `graceMs`.
 */
export async function stopAllWorkers(graceMs = 5000): Promise<void> {
  await Promise.all(
    [...children].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
}

// The built command line (dist/platform/bin.js) as a subprocess, the way `para serve|chat|bench|admin` runs it.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PYTHON, REPO_ROOT } from './paths.js';

export const CLI = fileURLToPath(new URL('../../dist/platform/bin.js', import.meta.url));

/** The environment `para` gives the command line, without any operator key from the caller's shell. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PARA_PYTHON: PYTHON, PARA_ROOT: REPO_ROOT, OMP_NUM_THREADS: '1' };
  delete env.PARA_OPERATOR_KEY;
  delete env.PARA_API_KEY;
  return { ...env, ...extra };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one command to its end. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = cliEnv(), timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`para ${args.join(' ')} ran over ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ServeProcess {
  process: ChildProcess;
  /** stdout up to and including the ready block. */
  output: string;
  url: string;
  tenantKeys: Record<string, string>;
  operatorKey: string;
  workerPids: number[];
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>;
  stderr(): string;
}

const serving = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of serving) child.kill('SIGKILL');
});

/** Starts `serve` and waits for its ready block ("Stop: Ctrl-C"); the keys and URL are read from what it printed. */
export function startServe(args: string[], env: NodeJS.ProcessEnv = cliEnv(), timeoutMs = 150_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  serving.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      serving.delete(child);
      resolve(code);
    }),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve not ready in ${timeoutMs} ms:\n${stdout}\n${stderr}`)), timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code}) before it was ready:\n${stdout}\n${stderr}`));
    });
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!stdout.includes('Stop: Ctrl-C')) return;
      clearTimeout(timer);
      const tenantKeys = Object.fromEntries([...stdout.matchAll(/^\s+(?:tenant keys\s+)?(acme|globex)\s+(sk-para-\S+)/gm)].map((m) => [m[1]!, m[2]!]));
      resolve({
        process: child,
        output: stdout,
        url: /PARA gateway ready at (\S+)/.exec(stdout)![1]!,
        tenantKeys,
        operatorKey: /operator key\s+(\S+)/.exec(stdout)![1]!,
        workerPids: [...stdout.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1])),
        exited,
        stderr: () => stderr,
      });
    });
  });
}

/** True while a process with this id exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

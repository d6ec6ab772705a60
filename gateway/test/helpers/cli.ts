// The built command line (dist/platform/bin.js) as a subprocess, the way `para serve|chat|bench|admin` runs it.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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

/**
 * What the kernel says of a process (Linux): its state, parent, and each thread's state and wait channel, so that a
 * process that will not exit shows whether it is a zombie nobody reaped or where its threads sleep.
 */
export function describeProcess(pid: number): string {
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so split after the last ')'
  const fields = (stat: string) => stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const stat = read(`/proc/${pid}/stat`);
  if (stat === '?') return `pid ${pid} gone`;
  const [state, ppid] = fields(stat);
  let threads: string[] = [];
  try {
    threads = readdirSync(`/proc/${pid}/task`).map((tid) => `${tid}:${fields(read(`/proc/${pid}/task/${tid}/stat`))[0]}/${read(`/proc/${pid}/task/${tid}/wchan`)}`);
  } catch {
    // the process ended while being read
  }
  return `pid ${pid} state ${state} ppid ${ppid} threads ${threads.join(' ') || 'unreadable'}`;
}

// Where things live for the platform commands: the repository, the Python interpreter, the data directory.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `para` sets PARA_ROOT; run directly, the repository is three levels above this file (dist/platform/ or src/platform/). */
export function repoRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.PARA_ROOT || fileURLToPath(new URL('../../../', import.meta.url));
}

/**
 * The interpreter engine workers run with: `para` passes its own as PARA_PYTHON. A relative path is made
 * absolute here, since workers run in the repository, not in the caller's directory.
 */
export function pythonCommand(env: NodeJS.ProcessEnv = process.env): string {
  const python = env.PARA_PYTHON || 'python3';
  return python.includes('/') ? resolve(python) : python;
}

/** Beside the model cache of the Python side (PARA_CACHE, else ~/.cache/parapeft). */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.PARA_CACHE || join(homedir(), '.cache', 'parapeft'), 'gateway');
}

/** The embedded model, whose committed adapters `serve` registers. */
export const DEFAULT_MODEL = 'smollm2-135m';

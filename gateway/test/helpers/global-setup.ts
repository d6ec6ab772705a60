// Writes the tiny random chat model and its three adapters once for the whole run (tests/make_tiny_worker.py).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { PYTHON, REPO_ROOT } from './paths.js';

declare module 'vitest' {
  export interface ProvidedContext {
    tinyDir: string;
  }
}

export default function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'para-gateway-tiny-'));
  const made = spawnSync(PYTHON, [join(REPO_ROOT, 'tests', 'make_tiny_worker.py'), dir], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`make_tiny_worker.py failed:\n${made.stderr}`);
  project.provide('tinyDir', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}

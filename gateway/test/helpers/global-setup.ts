// Once for the whole run: writes the tiny random chat model and its three adapters (tests/make_tiny_worker.py),
// and starts a private PostgreSQL server (helpers/postgres.ts) whose URL every file can use.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { PYTHON, REPO_ROOT } from './paths.js';
import { startPostgres } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    tinyDir: string;
    /** postgres://…/ of the run's server, without a database name (see freshDatabase). */
    postgresUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const postgres = await startPostgres();
  project.provide('postgresUrl', postgres.baseUrl);
  const dir = mkdtempSync(join(tmpdir(), 'para-gateway-tiny-'));
  const made = spawnSync(PYTHON, [join(REPO_ROOT, 'tests', 'make_tiny_worker.py'), dir], { encoding: 'utf8' });
  if (made.status !== 0) {
    postgres.stop();
    throw new Error(`make_tiny_worker.py failed:\n${made.stderr}`);
  }
  project.provide('tinyDir', dir);
  return () => {
    rmSync(dir, { recursive: true, force: true });
    postgres.stop();
  };
}

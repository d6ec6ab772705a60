// Where `para serve` puts its engine workers: one per GPU through each child's CUDA_VISIBLE_DEVICES, several
// per GPU only when asked. The rules (placeWorkers) directly, then `para serve --workers 2 --device cuda` end
// to end on this CPU machine: the workers' interpreter is a probe that records each child's environment and
// then runs the real engine on the CPU.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { CliError } from '../src/platform/args.js';
import { placeWorkers } from '../src/platform/placement.js';
import { cliEnv, runCli, startServe } from './helpers/cli.js';
import { PYTHON, REPO_ROOT } from './helpers/paths.js';
import { freshDatabase } from './helpers/postgres.js';
import pg from 'pg';

const none = () => [];
const gpusOf = (p: ReturnType<typeof placeWorkers>) => p.workers.map((w) => w.env.CUDA_VISIBLE_DEVICES);

describe('placeWorkers', () => {
  it('puts one worker on each GPU, by default as many as there are GPUs', () => {
    expect(gpusOf(placeWorkers({ device: 'cuda' }, {}, () => ['0', '1', '2']))).toEqual(['0', '1', '2']);
    expect(placeWorkers({ device: 'cuda' }, {}, () => ['0']).device).toBe('cuda');
    expect(gpusOf(placeWorkers({ workers: 2, device: 'cuda', gpus: ['1', '3'] }, {}, none))).toEqual(['1', '3']);
    // No --device: GPUs found means CUDA.
    expect(gpusOf(placeWorkers({ workers: 2 }, {}, () => ['0', '1']))).toEqual(['0', '1']);
  });

  it('takes the GPUs from CUDA_VISIBLE_DEVICES when --gpus is not given, and --gpus over both', () => {
    const env = { CUDA_VISIBLE_DEVICES: '4,5' };
    expect(gpusOf(placeWorkers({ device: 'cuda' }, env, () => ['0', '1']))).toEqual(['4', '5']);
    expect(gpusOf(placeWorkers({ device: 'cuda', gpus: ['2'] }, env, () => ['0', '1']))).toEqual(['2']);
  });

  it('puts several workers on one GPU only when asked, spreading them first', () => {
    expect(() => placeWorkers({ workers: 3, device: 'cuda', gpus: ['0', '1'] }, {}, none)).toThrow(/--workers-per-gpu 2/);
    expect(gpusOf(placeWorkers({ workers: 3, device: 'cuda', gpus: ['0', '1'], perGpu: 2 }, {}, none))).toEqual(['0', '1', '0']);
    expect(gpusOf(placeWorkers({ device: 'cuda', gpus: ['0', '1'], perGpu: 2 }, {}, none))).toEqual(['0', '1', '0', '1']);
  });

  it('refuses what cannot be placed, by name', () => {
    expect(() => placeWorkers({ device: 'cuda' }, {}, none)).toThrow(CliError);
    expect(() => placeWorkers({ device: 'cuda' }, {}, none)).toThrow(/no GPU is visible/);
    expect(() => placeWorkers({ device: 'cuda' }, { CUDA_VISIBLE_DEVICES: '' }, () => ['0'])).toThrow(/no GPU is visible/);
    expect(() => placeWorkers({ device: 'cuda:1' }, {}, () => ['0', '1'])).toThrow(/--gpus/);
    expect(() => placeWorkers({ device: 'cpu', gpus: ['0'] }, {}, none)).toThrow(/--gpus .* --device cpu/);
    expect(() => placeWorkers({ device: 'cpu', perGpu: 2 }, {}, none)).toThrow(/--workers-per-gpu/);
    expect(() => placeWorkers({ device: 'cuda', gpus: ['0', '0'] }, {}, none)).toThrow(/twice/);
  });

  it('leaves CPU workers alone but splits the cores between several', () => {
    const one = placeWorkers({ device: 'cpu' }, {}, () => ['0']);
    expect(one.workers).toEqual([{ gpu: undefined, env: {} }]);
    const two = placeWorkers({ workers: 2 }, {}, none);
    expect(two.device).toBeUndefined();
    expect(two.workers.every((w) => w.env.CUDA_VISIBLE_DEVICES === undefined && Number(w.env.OMP_NUM_THREADS) >= 1)).toBe(true);
    expect(placeWorkers({ workers: 2 }, { OMP_NUM_THREADS: '1' }, none).workers[0]!.env).toEqual({});
  });
});

describe('para serve --workers 2 --device cuda', () => {
  const dir = mkdtempSync(join(tmpdir(), 'para-placement-'));
  const probeDir = join(dir, 'probe');
  const python = join(dir, 'python');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives each worker process its own GPU through CUDA_VISIBLE_DEVICES (and keeps its state in PostgreSQL with --db)', async () => {
    rmSync(probeDir, { recursive: true, force: true });
    mkdirSync(probeDir, { recursive: true });
    writeFileSync(python, `#!/bin/sh\nexec ${PYTHON} ${join(REPO_ROOT, 'gateway', 'test', 'python', 'placement_probe.py')} "$@"\n`);
    chmodSync(python, 0o755);
    const env = cliEnv({ PARA_PYTHON: python, PROBE_DIR: probeDir, CUDA_VISIBLE_DEVICES: '0,1' });
    const tiny = inject('tinyDir');
    const db = await freshDatabase(inject('postgresUrl'), 'serve');
    const serve = await startServe(['--workers', '2', '--device', 'cuda', '--model', join(tiny, 'model'), '--port', '0', '--data-dir', join(dir, 'data'), '--slots', '2', '--db', db], env);
    try {
      expect(serve.output).toContain('on GPUs 0, 1');
      const records = readdirSync(probeDir).map((f) => JSON.parse(readFileSync(join(probeDir, f), 'utf8')) as { args: string[]; cuda_visible_devices: string });
      expect(records.map((r) => r.cuda_visible_devices).sort()).toEqual(['0', '1']);
      for (const r of records) expect(r.args.slice(r.args.indexOf('--device'), r.args.indexOf('--device') + 2)).toEqual(['--device', 'cuda']);
      // And they serve: both workers healthy behind the gateway.
      const healthy = async () => ((await (await fetch(`${serve.url}/healthz`)).json()) as { workers: { healthy: number } }).workers.healthy;
      const end = Date.now() + 30_000;
      while ((await healthy()) < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
      expect(await healthy()).toBe(2);
      // The demo tenants went into the PostgreSQL database named by --db.
      const client = new pg.Client({ connectionString: db });
      await client.connect();
      try {
        expect((await client.query('SELECT name FROM tenants ORDER BY name')).rows.map((r) => r.name)).toEqual(['acme', 'globex']);
      } finally {
        await client.end();
      }
    } finally {
      serve.process.kill('SIGTERM');
      await serve.exited;
    }
  });

  it('refuses a third worker on two GPUs unless asked, before starting any', async () => {
    const run = await runCli(['serve', '--workers', '3', '--device', 'cuda', '--gpus', '0,1', '--port', '0', '--data-dir', join(dir, 'data2')], cliEnv());
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('--workers-per-gpu 2');
  });
});

// `para serve --demo` with the embedded SmolLM2-135M and its committed adapters: acme (copa) and globex
// (boolq) are answered concurrently, and the engine's Stats show a decoding step that mixed both adapters.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

const dataDir = mkdtempSync(join(tmpdir(), 'para-demo-data-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

// No --port: the demo listens on a free port of its own, so it runs beside a gateway on 8080.
it('answers both tenants from one batch and exits 0', async () => {
  const started = Date.now();
  const run = await runCli(['serve', '--demo', '--data-dir', dataDir, '--slots', '8', '--max-len', '512'], undefined, 170_000);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  const answers = [...run.stdout.matchAll(/^\[(acme|globex) → (copa|boolq)\] (.+)\n {4}→ (.+)$/gm)];
  expect(answers.filter((m) => m[1] === 'acme' && m[2] === 'copa')).toHaveLength(3);
  expect(answers.filter((m) => m[1] === 'globex' && m[2] === 'boolq')).toHaveLength(3);
  for (const m of answers) expect(m[4]!.trim()).not.toBe('(empty)');
  // copa copies one of the two options; boolq says yes or no.
  expect(run.stdout).toContain('→ He dropped a hammer on his foot.');
  for (const m of answers.filter((a) => a[2] === 'boolq')) expect(m[4]!.toLowerCase()).toMatch(/\b(yes|no)\b/);
  // Each question shows the expected answer, and the tally counts the replies that match it.
  expect(answers.every((m) => /\(expected: .+\)$/.test(m[3]!))).toBe(true);
  const tally = /Matching the expected answer: copa (\d)\/3, boolq (\d)\/3/.exec(run.stdout)!;
  const matching = (model: string) => answers.filter((m) => m[2] === model && m[4]!.trim().replace(/\.$/, '').toLowerCase() === /\(expected: (.+)\)$/.exec(m[3]!)![1]!.replace(/\.$/, '').toLowerCase()).length;
  expect([Number(tally[1]), Number(tally[2])]).toEqual([matching('copa'), matching('boolq')]);
  const peak = /peak_batch_rows=(\d+), peak_batch_adapters=(\d+)/.exec(run.stdout)!;
  expect(Number(peak[2])).toBeGreaterThanOrEqual(2);
  expect(Number(peak[1])).toBeGreaterThanOrEqual(2);
  expect(run.stdout).toMatch(/one decoding step held \d+ rows with \d+ distinct adapters/);
  expect(Date.now() - started).toBeLessThan(120_000);
}, 180_000);

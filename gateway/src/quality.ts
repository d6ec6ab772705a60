// The quality table for the dashboard, from benchmarks/quality/results.json, chosen the way
// benchmarks/quality/report.py chooses it: per (task, method) the learning rate that was best on dev once
// the sweep over the whole grid has run, then that rate's seed-0 sweep run plus its seed runs.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

const runSchema = z
  .object({
    stage: z.string(),
    task: z.string(),
    method: z.string(),
    seed: z.number().nullable().optional(),
    lr: z.number().nullable().optional(),
    dev_metric: z.number(),
    smoke: z.boolean().optional(),
  })
  .loose();
type Run = z.infer<typeof runSchema>;

const resultsSchema = z.object({ runs: z.array(z.unknown()) });

export interface QualityRow {
  task: string;
  method: string;
  median: number;
  min: number;
  max: number;
  seeds: number;
}

export interface Quality {
  metric: 'dev';
  rows: QualityRow[];
}

const METHOD_ORDER = ['base', 'para', 'lora', 'dora', 'ia3'];
/** results.md's order (report.py's TASK_ORDER); a task it does not list comes after, as it first appears. */
const TASK_ORDER = ['copa', 'boolq', 'squad', 'gsm8k', 'spider'];

function chosenLr(runs: Run[], task: string, method: string): number | null {
  const grid = new Set(runs.filter((r) => r.stage === 'sweep').map((r) => r.lr));
  const sweep = runs.filter((r) => r.stage === 'sweep' && r.task === task && r.method === method);
  const tried = new Set(sweep.map((r) => r.lr));
  if (sweep.length === 0 || tried.size !== grid.size || [...grid].some((lr) => !tried.has(lr))) return null;
  const best = sweep.reduce((a, b) => (b.dev_metric > a.dev_metric || (b.dev_metric === a.dev_metric && (b.lr ?? 0) < (a.lr ?? 0)) ? b : a));
  return best.lr ?? null;
}

function mainRuns(runs: Run[], task: string, method: string): Run[] {
  if (method === 'base') return runs.filter((r) => r.stage === 'base' && r.task === task);
  const lr = chosenLr(runs, task, method);
  if (lr === null) return [];
  return runs.filter(
    (r) => r.task === task && r.method === method && r.lr === lr && (r.stage === 'seeds' || (r.stage === 'sweep' && r.seed === 0)),
  );
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export async function readQuality(path: string): Promise<Quality> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { metric: 'dev', rows: [] };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { metric: 'dev', rows: [] }; // a half-written file while the study runs: show nothing rather than fail
  }
  const parsed = resultsSchema.safeParse(json);
  if (!parsed.success) return { metric: 'dev', rows: [] };
  const runs = parsed.data.runs.flatMap((r) => {
    const run = runSchema.safeParse(r);
    return run.success && !run.data.smoke ? [run.data] : [];
  });
  const seen = [...new Set(runs.map((r) => r.task))];
  const tasks = [...TASK_ORDER.filter((t) => seen.includes(t)), ...seen.filter((t) => !TASK_ORDER.includes(t))];
  const methods = METHOD_ORDER.filter((m) => runs.some((r) => r.method === m));
  const rows: QualityRow[] = [];
  for (const task of tasks) {
    for (const method of methods) {
      const values = mainRuns(runs, task, method).map((r) => 100 * r.dev_metric);
      if (values.length === 0) continue;
      rows.push({ task, method, median: round1(median(values)), min: round1(Math.min(...values)), max: round1(Math.max(...values)), seeds: values.length });
    }
  }
  return { metric: 'dev', rows };
}

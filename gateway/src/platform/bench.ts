// `para bench`: a multi-tenant load on a running gateway. Bench tenants get a fresh key each (their names
// are reused across runs), then `--concurrency` loops send streamed chat requests spread over the tenants
// and models until `--requests` are done; throughput and latency percentiles come out as a table and,
// with --json, as a file.
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, platform, release } from 'node:os';
import { z } from 'zod';
import { ParaApiError, ParaClient, type Summary, summarize } from '../index.js';
import { CliError, type Command, DEFAULT_URL, explainFetchError, intFlag, operatorKey, parseCommand, urlFlag } from './args.js';
import { streamChat } from './stream.js';

const usage = `Usage: para bench [options]

Drives a running gateway with concurrent streamed chat requests from several tenants and adapters, and
reports requests/s, tokens/s and latency percentiles (time to first token and total).

Options:
  --url URL            the gateway (default ${DEFAULT_URL})
  --key KEY            the operator key (default: env PARA_OPERATOR_KEY), to create the bench tenants
  --tenants N          tenants bench-01 … bench-N, created if missing (default 10)
  --requests N         requests in all (default 200)
  --concurrency N      requests in flight at once (default 32)
  --max-tokens N       tokens per answer (default 16)
  --models A,B,...     adapters to spread the requests over (default: every shared adapter, else base)
  --json FILE          also write the results as JSON
  -h, --help           show this help

Bench tenants are created with high rate limits so the gateway's limits do not cap the measurement.
The keys made for a run are deleted at its end.
`;

const options = {
  url: { type: 'string' },
  key: { type: 'string' },
  tenants: { type: 'string' },
  requests: { type: 'string' },
  concurrency: { type: 'string' },
  'max-tokens': { type: 'string' },
  models: { type: 'string' },
  json: { type: 'string' },
} as const;

const schema = z.object({
  url: urlFlag(DEFAULT_URL),
  key: z.string().min(1).optional(),
  tenants: intFlag(10, 1, 1000),
  requests: intFlag(200, 1),
  concurrency: intFlag(32, 1, 10_000),
  'max-tokens': intFlag(16, 1),
  models: z
    .string()
    .optional()
    .transform((m) => m?.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.string()).min(1, 'name at least one adapter').optional()),
  json: z.string().min(1).optional(),
});
type BenchOptions = z.output<typeof schema>;

const PROMPTS = [
  'Name three colours of the rainbow.',
  'Is the sky blue? Answer yes or no.',
  'Write one sentence about the sea.',
  'What is two plus two?',
];

/** Limits far above any bench, so the measurement is the gateway's and the engine's, not the rate limiter's. */
const BENCH_LIMITS = { rpm: 1_000_000, tpm: 1_000_000_000 };

interface Outcome {
  ok: boolean;
  ttftMs: number | null;
  totalMs: number;
  tokens: number;
  error?: string;
}

export interface BenchReport {
  url: string;
  started: string;
  config: { tenants: number; requests: number; concurrency: number; max_tokens: number; models: string[] };
  machine: { platform: string; cpus: number; cpu_model: string; node: string };
  wall_s: number;
  ok: number;
  errors: number;
  error_samples: string[];
  completion_tokens: number;
  requests_per_s: number;
  tokens_per_s: number;
  latency_ms: { ttft: Summary; total: Summary };
}

/** The bench tenants, each with a fresh key; if any step fails, the keys already made are deleted first. */
async function prepareTenants(admin: ParaClient, count: number): Promise<{ name: string; key: string; keyId: string }[]> {
  const names = Array.from({ length: count }, (_, i) => `bench-${String(i + 1).padStart(2, '0')}`);
  const made = await Promise.allSettled(
    names.map(async (name) => {
      try {
        await admin.tenants.create({ name, ...BENCH_LIMITS });
      } catch (err) {
        if (!(err instanceof ParaApiError && err.status === 409)) throw err;
        // made by an earlier run, whose limits may since have been lowered: the run measures serving, not them
        await admin.tenants.setLimits(name, BENCH_LIMITS);
      }
      const key = await admin.keys.create(name);
      return { name, key: key.key, keyId: key.id };
    }),
  );
  const tenants = made.flatMap((m) => (m.status === 'fulfilled' ? [m.value] : []));
  const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
  if (failed) {
    await Promise.allSettled(tenants.map((t) => admin.keys.delete(t.keyId)));
    throw failed.reason;
  }
  return tenants;
}

async function defaultModels(admin: ParaClient): Promise<string[]> {
  const shared = (await admin.models()).map((m) => m.id).filter((id) => id !== 'base' && !id.includes('/'));
  return shared.length > 0 ? shared : ['base'];
}

async function drive(opts: BenchOptions, tenants: { key: string }[], models: string[]): Promise<{ outcomes: Outcome[]; wallMs: number }> {
  const outcomes: Outcome[] = [];
  let next = 0;
  const started = performance.now();
  const loop = async () => {
    for (let i = next++; i < opts.requests; i = next++) {
      const tenant = tenants[i % tenants.length]!;
      // A different stride for models than for tenants, so every tenant uses every model.
      const model = models[Math.floor(i / tenants.length) % models.length]!;
      try {
        const r = await streamChat({
          url: opts.url, key: tenant.key, model, maxTokens: opts['max-tokens'], temperature: 0,
          messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length]! }],
        });
        outcomes.push({ ok: true, ttftMs: r.ttftMs, totalMs: r.totalMs, tokens: r.completionTokens });
      } catch (err) {
        outcomes.push({ ok: false, ttftMs: null, totalMs: 0, tokens: 0, error: err instanceof Error ? err.message : String(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.requests) }, loop));
  return { outcomes, wallMs: performance.now() - started };
}

function report(opts: BenchOptions, models: string[], outcomes: Outcome[], wallMs: number, started: Date): BenchReport {
  const ok = outcomes.filter((o) => o.ok);
  const tokens = ok.reduce((sum, o) => sum + o.tokens, 0);
  const wallS = wallMs / 1000;
  return {
    url: opts.url,
    started: started.toISOString(),
    config: { tenants: opts.tenants, requests: opts.requests, concurrency: opts.concurrency, max_tokens: opts['max-tokens'], models },
    machine: { platform: `${platform()} ${release()}`, cpus: availableParallelism(), cpu_model: cpus()[0]?.model ?? 'unknown', node: process.version },
    wall_s: Math.round(wallS * 1000) / 1000,
    ok: ok.length,
    errors: outcomes.length - ok.length,
    error_samples: [...new Set(outcomes.flatMap((o) => (o.error ? [o.error] : [])))].slice(0, 5),
    completion_tokens: tokens,
    requests_per_s: Math.round((ok.length / wallS) * 100) / 100,
    tokens_per_s: Math.round((tokens / wallS) * 10) / 10,
    latency_ms: {
      ttft: summarize(ok.flatMap((o) => (o.ttftMs === null ? [] : [o.ttftMs]))),
      total: summarize(ok.map((o) => o.totalMs)),
    },
  };
}

function table(r: BenchReport): string {
  const ms = (v: number | null) => (v === null ? '—' : `${v.toFixed(0)} ms`).padStart(9);
  const row = (label: string, s: Summary) => `  ${label.padEnd(7)}${ms(s.p50)}${ms(s.p90)}${ms(s.p99)}`;
  return [
    `para bench: ${r.config.requests} requests, concurrency ${r.config.concurrency}, ${r.config.tenants} tenants, models ${r.config.models.join(',')}, max_tokens ${r.config.max_tokens}`,
    `  ${r.wall_s.toFixed(1)} s   ${r.requests_per_s.toFixed(2)} requests/s   ${r.tokens_per_s.toFixed(1)} tokens/s   ${r.completion_tokens} tokens   errors ${r.errors}`,
    `  ${''.padEnd(7)}${'p50'.padStart(9)}${'p90'.padStart(9)}${'p99'.padStart(9)}`,
    row('TTFT', r.latency_ms.ttft),
    row('total', r.latency_ms.total),
    ...r.error_samples.map((e) => `  error: ${e}`),
    '',
  ].join('\n');
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'drive a running gateway with a multi-tenant load; throughput and latency percentiles',
  usage,
  async run(argv) {
    const parsed = parseCommand(argv, options, schema, usage);
    if (!parsed) return 0; // --help: the usage is printed
    const opts = parsed.values;
    const key = operatorKey(opts.key);
    const admin = new ParaClient({ baseUrl: opts.url, apiKey: key });
    try {
      const tenants = await prepareTenants(admin, opts.tenants);
      try {
        const models = opts.models ?? (await defaultModels(new ParaClient({ baseUrl: opts.url, apiKey: tenants[0]!.key })));
        const started = new Date();
        const { outcomes, wallMs } = await drive(opts, tenants, models);
        const result = report(opts, models, outcomes, wallMs, started);
        process.stdout.write(table(result));
        if (opts.json) writeFileSync(opts.json, `${JSON.stringify(result, null, 2)}\n`);
        return result.errors === 0 ? 0 : 1;
      } finally {
        await Promise.allSettled(tenants.map((t) => admin.keys.delete(t.keyId)));
      }
    } catch (err) {
      if (err instanceof ParaApiError) throw new CliError(`gateway answered ${err.status}: ${err.message}`);
      throw explainFetchError(err, opts.url);
    }
  },
};

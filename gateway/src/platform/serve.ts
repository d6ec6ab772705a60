// `para serve`: engine workers as child processes (restarted when they die), then the gateway in this process,
// the shared adapters and two demo tenants, and examples to paste. Ctrl-C or SIGTERM stops the gateway and
// every worker.
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { type Gateway, ParaClient, isPostgresUrl, startGateway } from '../index.js';
import { CliError, type Command, messageOf, optionalIntFlag, parseCommand } from './args.js';
import { runDemo } from './demo.js';
import { DEFAULT_MODEL, defaultDataDir, pythonCommand, repoRoot } from './env.js';
import { readyText } from './examples.js';
import { placeWorkers } from './placement.js';
import { ensureDemoTenants, resolveOperatorKey } from './state.js';
import { WorkerSupervisor } from './supervisor.js';
import { startWorkers, stopAllWorkers } from './workers.js';

const usage = `Usage: para serve [options]

Starts engine workers (para engine) and the OpenAI-compatible gateway in front of them, registers the
committed adapters of the embedded model as shared adapters, creates the demo tenants acme and globex
with a key each (first start only), and prints examples to paste. Ctrl-C stops everything. A worker that
dies is started again on its address (after 1 s, doubling to 30 s while it keeps failing); meanwhile the
gateway serves on the others, and answers 503 while none is up.

Engine workers:
  --workers N          engine worker processes, each with its own copy of the backbone (default: one per
                       GPU on CUDA, else 1)
  --model NAME|DIR     backbone: a named model, HF id or local checkpoint (default ${DEFAULT_MODEL})
  --device DEV         torch device of the workers: cuda, cpu, mps (default: cuda when a GPU is found,
                       else cpu)
  --gpus LIST          on CUDA, the GPUs to use, as CUDA_VISIBLE_DEVICES names them (e.g. 0,2); default
                       CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists; worker i sees only the
                       i-th of them
  --workers-per-gpu N  allow N workers on one GPU (default 1: more workers than GPUs is an error)
  --slots N            concurrent sequences per worker (default: the engine's, 16)
  --max-len N          tokens per sequence, prompt included (default: the engine's, 2048)
  --adapter NAME=DIR   also register this adapter directory as a shared adapter; repeatable

Gateway:
  --port N             port to listen on (default 8080, with --demo 0; 0 picks a free one)
  --host ADDR          address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --data-dir DIR       uploaded adapters, keys and the database (default $PARA_CACHE/gateway or
                       ~/.cache/parapeft/gateway)
  --db FILE|URL        SQLite file (default <data dir>/gateway.db), or postgres://user@host/db: the
                       database several gateway replicas share (then --data-dir must be shared too)
  --operator-key KEY   the operator's key (or env PARA_OPERATOR_KEY); without either, one is generated on
                       first start and kept in <data dir>/operator-key (mode 0600)
  --log-level LEVEL    gateway log level: fatal, error, warn (default), info, debug, trace, silent

  --demo               after starting, send acme's (adapter copa) and globex's (adapter boolq) requests at
                       the same time, print the answers and the engine's proof that both adapters were
                       decoded in one batch, then stop (needs the embedded model)
  -h, --help           show this help

Workers are started with $PARA_PYTHON -m parapeft.cli.main engine (python3 when PARA_PYTHON is unset;
\`para serve\` sets it).
`;

const options = {
  workers: { type: 'string' },
  gpus: { type: 'string' },
  'workers-per-gpu': { type: 'string' },
  model: { type: 'string' },
  device: { type: 'string' },
  slots: { type: 'string' },
  'max-len': { type: 'string' },
  adapter: { type: 'string', multiple: true },
  port: { type: 'string' },
  host: { type: 'string' },
  'data-dir': { type: 'string' },
  db: { type: 'string' },
  'operator-key': { type: 'string' },
  'log-level': { type: 'string' },
  demo: { type: 'boolean' },
} as const;

const adapterFlag = z.string().transform((item, ctx) => {
  const eq = item.indexOf('=');
  if (eq <= 0 || eq === item.length - 1) {
    ctx.addIssue({ code: 'custom', message: `takes NAME=DIR, got '${item}'` });
    return z.NEVER;
  }
  return { name: item.slice(0, eq), dir: resolve(item.slice(eq + 1)) };
});

const schema = z.object({
  workers: optionalIntFlag(1, 64),
  gpus: z
    .string()
    .regex(/^[A-Za-z0-9-]+(,[A-Za-z0-9-]+)*$/, 'a comma-separated list of GPU ids, e.g. 0,1')
    .transform((list) => list.split(','))
    .optional(),
  'workers-per-gpu': optionalIntFlag(1, 64),
  model: z.string().min(1).default(DEFAULT_MODEL),
  device: z.string().min(1).optional(),
  slots: optionalIntFlag(1, 4096),
  'max-len': optionalIntFlag(16),
  adapter: z.array(adapterFlag).default([]),
  port: optionalIntFlag(0, 65535),
  host: z.string().min(1).default('127.0.0.1'),
  'data-dir': z.string().min(1).optional(),
  db: z.string().min(1).optional(),
  'operator-key': z.string().min(16, 'the operator key needs at least 16 characters').optional(),
  'log-level': z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
  demo: z.boolean().default(false),
});
type ServeOptions = z.output<typeof schema>;

const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];

/** The committed adapters of the embedded model, plus --adapter ones; every directory checked up front. */
function sharedAdapters(opts: Pick<ServeOptions, 'model' | 'adapter'>, root: string): { name: string; dir: string }[] {
  const committed: { name: string; dir: string }[] = [];
  const committedDir = join(root, 'adapters', opts.model);
  if (opts.model === DEFAULT_MODEL && existsSync(committedDir)) {
    for (const entry of readdirSync(committedDir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const dir = join(committedDir, entry.name);
      if (entry.isDirectory() && existsSync(join(dir, ADAPTER_FILES[0]!))) committed.push({ name: entry.name, dir });
    }
    // copa first: it is the adapter the printed examples call.
    committed.sort((a, b) => Number(b.name === 'copa') - Number(a.name === 'copa'));
  }
  for (const seed of opts.adapter) {
    const missing = ADAPTER_FILES.filter((f) => !existsSync(join(seed.dir, f)));
    if (missing.length > 0) throw new CliError(`--adapter ${seed.name}=${seed.dir}: ${missing.join(' and ')} not found there`);
  }
  const named = new Set(opts.adapter.map((a) => a.name));
  return [...committed.filter((c) => !named.has(c.name)), ...opts.adapter];
}

/** Fails early, before minutes of model loading, when the port is taken. */
function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => reject(portError(err, host, port)));
    server.listen(port, host, () => server.close(() => resolvePort()));
  });
}

function portError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  if (err.code === 'EADDRINUSE') {
    return new CliError(`port ${port} on ${host} is already in use (another para serve?); pick another with --port N, or --port 0 for any free port`);
  }
  if (err.code === 'EACCES') return new CliError(`not allowed to listen on ${host}:${port}; ports below 1024 need privileges, use --port 8080`);
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') return new CliError(`--host ${host} is not an address of this machine`);
  return err;
}

/** A local model directory that is not there is reported here rather than as a Python traceback. */
function checkModel(model: string): void {
  const looksLikePath = isAbsolute(model) || model.startsWith('.') || model.startsWith('~');
  if (looksLikePath && !existsSync(model)) throw new CliError(`--model ${model}: no such directory`);
}

async function serve(given: ServeOptions): Promise<number> {
  // The demo needs no fixed port, and should run beside a `para serve` already on 8080.
  const opts = { ...given, port: given.port ?? (given.demo ? 0 : 8080) };
  const root = repoRoot();
  const dataDir = resolve(opts['data-dir'] ?? defaultDataDir());
  mkdirSync(dataDir, { recursive: true });
  const db = opts.db ? (isPostgresUrl(opts.db) ? opts.db : resolve(opts.db)) : join(dataDir, 'gateway.db');
  const placement = placeWorkers({ workers: opts.workers, device: opts.device, gpus: opts.gpus, perGpu: opts['workers-per-gpu'] });
  const count = placement.workers.length;
  const seeds = sharedAdapters(opts, root);
  if (opts.demo && !['copa', 'boolq'].every((name) => seeds.some((s) => s.name === name))) {
    throw new CliError(`--demo needs the copa and boolq adapters, committed for ${DEFAULT_MODEL} (start with --model ${DEFAULT_MODEL})`);
  }
  checkModel(opts.model);
  await checkPortFree(opts.host, opts.port);
  const operator = resolveOperatorKey(dataDir, opts['operator-key']);

  let gateway: Gateway | undefined;
  let supervisor: WorkerSupervisor | undefined;
  let stopping: Promise<void> | undefined;
  const shutdown = (why: string) => {
    stopping ??= (async () => {
      if (why) process.stdout.write(`\n${why}: stopping the gateway and the engine workers\n`);
      supervisor?.stop();
      await gateway?.close().catch(() => undefined);
      await stopAllWorkers();
    })();
    return stopping;
  };
  // Installed before the workers start, so Ctrl-C during a slow model load also stops them.
  const onSignal = (signal: NodeJS.Signals) => void shutdown(signal).then(() => process.exit(0));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const plural = count === 1 ? '' : 's';
    const where = placement.workers.some((w) => w.gpu !== undefined) ? ` on GPU${plural} ${placement.workers.map((w) => w.gpu).join(', ')}` : '';
    process.stdout.write(`Starting ${count} engine worker${plural} for ${opts.model}${where} (the first start of a model converts it; later ones take seconds)\n`);
    const spec = {
      python: pythonCommand(), model: opts.model, device: placement.device, slots: opts.slots, maxLen: opts['max-len'], cwd: root,
      env: { ...process.env }, workerEnv: placement.workers.map((w) => w.env),
    };
    const workers = await startWorkers(spec, count);
    supervisor = new WorkerSupervisor(spec, workers, { log: (message) => process.stderr.write(`para serve: ${message}\n`) });
    process.stdout.write(`Engine worker${plural} ready: ${workers.map((w) => `${w.address} (pid ${w.pid})`).join(', ')}; starting the gateway\n`);
    try {
      gateway = await startGateway({
        port: opts.port,
        host: opts.host,
        workers: workers.map((w) => w.address),
        db,
        dataDir,
        operatorKey: operator.key,
        backbone: basename(opts.model),
        sharedAdapters: seeds,
        logLevel: opts['log-level'],
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw code ? portError(err as NodeJS.ErrnoException, opts.host, opts.port) : err;
    }
    const admin = new ParaClient({ baseUrl: gateway.url, apiKey: operator.key });
    const tenants = await ensureDemoTenants(admin, gateway.url, dataDir);
    const adapters = seeds.map((s) => s.name);
    process.stdout.write(
      readyText({
        url: gateway.url, model: opts.model, workers: workers.map((w) => w.address), adapters, tenants, operator, dataDir,
        dashboard: existsSync(join(root, 'dashboard', 'dist', 'index.html')),
      }),
    );
    if (!opts.demo) return await new Promise<number>(() => undefined); // runs until a signal
    const ok = await runDemo({ url: gateway.url, tenants, workers: workers.map((w) => w.address), protoPath: join(root, 'proto', 'engine.proto') });
    await shutdown('');
    return ok ? 0 : 1;
  } catch (err) {
    await shutdown('');
    throw err;
  }
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'start engine workers and the gateway (OpenAI-compatible API, tenants, dashboard)',
  usage,
  async run(argv) {
    const parsed = parseCommand(argv, options, schema, usage);
    if (!parsed) return 0; // --help: the usage is printed
    try {
      return await serve(parsed.values);
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(messageOf(err));
    }
  },
};

// Command-line arguments of `para-gateway` (src/main.ts) to GatewayOptions (validated later by the options schema).
import { parseArgs } from 'node:util';
import type { GatewayOptions } from './config.js';

export const USAGE = `Usage: para-gateway [options]

OpenAI-compatible gateway serving PARA adapters from engine workers (para engine).

Options:
  --port N                 port to listen on (default 8080; 0 picks a free one)
  --host ADDR              address to listen on (default 127.0.0.1)
  --worker HOST:PORT       an engine worker; repeat for several
  --db FILE|URL            SQLite file (default para-gateway.db), or postgres://user:pass@host:5432/db for
                           a database several replicas share (migrated at start)
  --db-pool-size N         PostgreSQL connections at most (default 10; not for SQLite)
  --data-dir DIR           where uploaded adapters are stored (default para-data); replicas on one
                           PostgreSQL need one shared folder (blobs named by SHA-256)
  --operator-key KEY       the operator's key (or env PARA_OPERATOR_KEY)
  --backbone NAME          the backbone's name shown in /v1/models and the overview
  --shared-adapter NAME=DIR  register a shared adapter from a directory at start; repeatable
  --health-interval-ms N   how often workers are health-checked (default 2000)
  --adapter-sweep-ms N     how often workers' adapters are compared with the registry, and versions deleted
                           meanwhile (on any replica) unloaded (default 30000)
  --log-level LEVEL        fatal, error, warn, info (default), debug, trace or silent
  --help                   show this help
`;

export type CliResult = { help: true } | { help: false; options: GatewayOptions };

export function parseCli(argv: string[], env: NodeJS.ProcessEnv = process.env): CliResult {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      worker: { type: 'string', multiple: true },
      db: { type: 'string' },
      'db-pool-size': { type: 'string' },
      'data-dir': { type: 'string' },
      'operator-key': { type: 'string' },
      backbone: { type: 'string' },
      'shared-adapter': { type: 'string', multiple: true },
      'health-interval-ms': { type: 'string' },
      'adapter-sweep-ms': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return { help: true };
  const integer = (flag: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text)) throw new Error(`--${flag} takes a whole number, got '${text}'`);
    return Number(text);
  };
  const sharedAdapters = (values['shared-adapter'] ?? []).map((item) => {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new Error(`--shared-adapter takes NAME=DIR, got '${item}'`);
    return { name: item.slice(0, eq), dir: item.slice(eq + 1) };
  });
  const options: GatewayOptions = {
    port: integer('port', values.port),
    host: values.host,
    workers: values.worker ?? [],
    db: values.db,
    dbPoolSize: integer('db-pool-size', values['db-pool-size']),
    dataDir: values['data-dir'],
    operatorKey: values['operator-key'] ?? env.PARA_OPERATOR_KEY,
    backbone: values.backbone,
    sharedAdapters,
    healthIntervalMs: integer('health-interval-ms', values['health-interval-ms']),
    adapterSweepMs: integer('adapter-sweep-ms', values['adapter-sweep-ms']),
    logLevel: values['log-level'] as GatewayOptions['logLevel'],
  };
  // Leave unset options out, so the schema's defaults apply.
  for (const key of Object.keys(options) as (keyof GatewayOptions)[]) if (options[key] === undefined) delete options[key];
  return { help: false, options };
}

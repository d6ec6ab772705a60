// `para admin`: the admin SDK (ParaClient) from the command line: tenants, keys, adapters, usage.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ParaApiError, ParaClient } from '../index.js';
import { CliError, type Command, DEFAULT_URL, UsageError, explainFetchError, operatorKey, optionalIntFlag, parseCommand, urlFlag } from './args.js';

const usage = `Usage: para admin <command> [options]

Manage a running gateway with the operator key.

Commands:
  tenants create NAME [--rpm N] [--tpm N]      add a tenant (limits: requests and tokens per minute)
  tenants list                                 tenants and their limits
  tenants limits NAME [--rpm N] [--tpm N]      change a tenant's limits (from its next request on)
  keys create TENANT                           a new API key for a tenant (shown once)
  adapters upload NAME DIR [--tenant T | --shared]
                                               upload DIR/adapter_config.json and adapter_model.safetensors
                                               as a tenant's adapter (T/NAME) or a shared one (NAME)
  adapters list                                adapters and their versions
  usage                                        requests and tokens per tenant

Options for every command:
  --url URL            the gateway (default ${DEFAULT_URL})
  --key KEY            the operator key (default: env PARA_OPERATOR_KEY)
  --json               print the gateway's reply as JSON instead of a table
  -h, --help           show this help
`;

const options = {
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  tenant: { type: 'string' },
  shared: { type: 'boolean' },
} as const;

const schema = z.object({
  url: urlFlag(DEFAULT_URL),
  key: z.string().min(1).optional(),
  json: z.boolean().default(false),
  rpm: optionalIntFlag(1),
  tpm: optionalIntFlag(1),
  tenant: z.string().min(1).optional(),
  shared: z.boolean().default(false),
});
type AdminOptions = z.output<typeof schema>;

interface Action {
  /** Positional arguments after the two command words, by name. */
  args: string[];
  /** Flags besides --url, --key and --json that this action accepts. */
  flags: (keyof AdminOptions)[];
  run(admin: ParaClient, args: string[], opts: AdminOptions): Promise<{ json: unknown; text: string }>;
}

/** Fixed-width columns; the first row is the header. */
function columns(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c] ?? '').length)));
  return `${rows.map((r) => r.map((cell, c) => String(cell).padEnd(widths[c]!)).join('  ').trimEnd()).join('\n')}\n`;
}

const ACTIONS: Record<string, Action> = {
  'tenants create': {
    args: ['NAME'],
    flags: ['rpm', 'tpm'],
    async run(admin, [name], opts) {
      const tenant = await admin.tenants.create({ name: name!, rpm: opts.rpm, tpm: opts.tpm });
      return { json: tenant, text: `tenant ${tenant.name} created (${tenant.rpm} requests/min, ${tenant.tpm} tokens/min)\n` };
    },
  },
  'tenants limits': {
    args: ['NAME'],
    flags: ['rpm', 'tpm'],
    async run(admin, [name], opts) {
      if (opts.rpm === undefined && opts.tpm === undefined) throw new UsageError('tenants limits needs --rpm N, --tpm N or both');
      const tenant = await admin.tenants.setLimits(name!, { rpm: opts.rpm, tpm: opts.tpm });
      return { json: tenant, text: `tenant ${tenant.name} now has ${tenant.rpm} requests/min, ${tenant.tpm} tokens/min\n` };
    },
  },
  'tenants list': {
    args: [],
    flags: [],
    async run(admin) {
      const tenants = await admin.tenants.list();
      return { json: tenants, text: columns([['NAME', 'RPM', 'TPM', 'CREATED'], ...tenants.map((t) => [t.name, t.rpm, t.tpm, new Date(t.created * 1000).toISOString()])]) };
    },
  },
  'keys create': {
    args: ['TENANT'],
    flags: [],
    async run(admin, [tenant]) {
      const key = await admin.keys.create(tenant!);
      return { json: key, text: `${key.key}\n(key ${key.id} for ${tenant}; only its hash is kept, so save it now)\n` };
    },
  },
  'adapters upload': {
    args: ['NAME', 'DIR'],
    flags: ['tenant', 'shared'],
    async run(admin, [name, dir], opts) {
      if (opts.shared === (opts.tenant !== undefined)) throw new UsageError('adapters upload takes exactly one of --tenant T and --shared');
      const path = resolve(dir!);
      for (const file of ['adapter_config.json', 'adapter_model.safetensors']) {
        if (!existsSync(join(path, file))) throw new CliError(`${join(path, file)} not found`);
      }
      const adapter = await admin.adapters.uploadDirectory(path, { name: name!, shared: opts.shared, tenant: opts.tenant });
      return { json: adapter, text: `adapter ${adapter.id} version ${adapter.version} uploaded (${adapter.parameters} parameters, sha256 ${adapter.sha256.slice(0, 12)}…)\n` };
    },
  },
  'adapters list': {
    args: [],
    flags: [],
    async run(admin) {
      const adapters = await admin.adapters.list();
      return { json: adapters, text: columns([['ID', 'OWNER', 'VERSIONS', 'PARAMETERS'], ...adapters.map((a) => [a.id, a.owner ?? 'shared', a.versions.join(','), a.parameters])]) };
    },
  },
  usage: {
    args: [],
    flags: [],
    async run(admin) {
      const usage = await admin.usage();
      return {
        json: usage,
        text: columns([['TENANT', 'REQUESTS', 'PROMPT TOKENS', 'COMPLETION TOKENS'], ...usage.map((u) => [u.tenant, u.requests, u.prompt_tokens, u.completion_tokens])]),
      };
    },
  },
};

/** The action named by the first one or two positionals, and the rest. */
function pick(positionals: string[]): { name: string; action: Action; args: string[] } {
  for (const words of [2, 1]) {
    const name = positionals.slice(0, words).join(' ');
    const action = ACTIONS[name];
    if (action) return { name, action, args: positionals.slice(words) };
  }
  throw new UsageError(positionals.length ? `unknown admin command '${positionals.slice(0, 2).join(' ')}'` : 'which admin command? (see --help)');
}

export const adminCommand: Command = {
  name: 'admin',
  summary: 'manage tenants, keys and adapters of a running gateway',
  usage,
  async run(argv) {
    const parsed = parseCommand(argv, options, schema, usage, { positionals: true });
    if (!parsed) return 0; // --help: the usage is printed
    const opts = parsed.values;
    const { name, action, args } = pick(parsed.positionals);
    if (args.length !== action.args.length) {
      throw new UsageError(`admin ${name} takes ${action.args.length ? action.args.join(' ') : 'no arguments'}, got ${args.length ? args.join(' ') : 'none'}`);
    }
    const stray = (['rpm', 'tpm', 'tenant'] as const).filter((f) => opts[f] !== undefined && !action.flags.includes(f));
    if (opts.shared && !action.flags.includes('shared')) stray.push('shared' as never);
    if (stray.length) throw new UsageError(`admin ${name} does not take --${stray.join(', --')}`);
    const key = operatorKey(opts.key);
    try {
      const result = await action.run(new ParaClient({ baseUrl: opts.url, apiKey: key }), args, opts);
      process.stdout.write(opts.json ? `${JSON.stringify(result.json, null, 2)}\n` : result.text);
      return 0;
    } catch (err) {
      if (err instanceof ParaApiError) throw new CliError(`gateway answered ${err.status}: ${err.message}`);
      throw explainFetchError(err, opts.url);
    }
  },
};

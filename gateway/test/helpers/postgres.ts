// A private PostgreSQL server for the tests: Debian's `postgresql` package (installed with apt-get when it is
// missing and we are root, as on CI), a fresh cluster in a temporary folder on a free port, trust auth on
// 127.0.0.1 only, stopped and removed at the end. Each test file takes its own database (freshDatabase).
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './engine.js';

const PG_ROOT = '/usr/lib/postgresql';

function binDir(): string | undefined {
  if (!existsSync(PG_ROOT)) return undefined;
  const versions = readdirSync(PG_ROOT).filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(PG_ROOT, versions[0], 'bin') : undefined;
}

const isRoot = () => process.getuid?.() === 0;

function installIfMissing(): string {
  let bin = binDir();
  if (bin) return bin;
  if (!isRoot()) throw new Error('PostgreSQL is not installed (apt-get install postgresql), and installing it needs root');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'postgresql'], { env, stdio: 'ignore' });
  bin = binDir();
  if (!bin) throw new Error(`apt-get installed postgresql, but no initdb was found under ${PG_ROOT}`);
  return bin;
}

/** Runs a server binary, as the `postgres` user when we are root (the server refuses to run as root). */
function runAsServerUser(command: string, args: string[]): void {
  const [file, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  const result = spawnSync(file, argv, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
}

export interface PostgresServer {
  /** postgres://para@127.0.0.1:PORT/ — add a database name. */
  baseUrl: string;
  stop(): void;
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = installIfMissing();
  const dir = mkdtempSync(join(tmpdir(), 'para-pg-'));
  const data = join(dir, 'data');
  if (isRoot()) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
  runAsServerUser(join(bin, 'initdb'), ['-D', data, '-U', 'para', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  // fsync off: a test cluster is thrown away, and durability is not what these tests measure.
  const options = `-c listen_addresses=127.0.0.1 -c port=${port} -k ${dir} -c fsync=off -c max_connections=200`;
  runAsServerUser(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-o', options, '-w', '-t', '60', 'start']);
  return {
    baseUrl: `postgres://para@127.0.0.1:${port}/`,
    stop() {
      try {
        runAsServerUser(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

let counter = 0;

/** A new, empty database on the run's server; returns its URL. */
export async function freshDatabase(baseUrl: string, prefix = 'para'): Promise<string> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`;
  const admin = new pg.Client({ connectionString: `${baseUrl}postgres` });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return `${baseUrl}${name}`;
}

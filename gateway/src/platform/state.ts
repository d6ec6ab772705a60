// What `para serve` keeps in its data directory besides the database: the operator key and the demo
// tenants' keys. The gateway stores only hashes of tenant keys, so these files are the one place the
// clear-text keys survive a restart; both are written readable by the owner only (0600).
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ParaApiError, type ParaClient } from '../index.js';

export const OPERATOR_KEY_FILE = 'operator-key';
export const DEMO_KEYS_FILE = 'demo-tenants.json';
export const DEMO_TENANTS = ['acme', 'globex'] as const;

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600); // the mode above applies only when the file is created
}

export interface OperatorKey {
  key: string;
  source: 'flag' | 'env' | 'file' | 'generated';
}

/** --operator-key, else PARA_OPERATOR_KEY, else the data directory's key, else a new one stored there. */
export function resolveOperatorKey(dataDir: string, flag: string | undefined, env: NodeJS.ProcessEnv = process.env): OperatorKey {
  if (flag) return { key: flag, source: 'flag' };
  if (env.PARA_OPERATOR_KEY) return { key: env.PARA_OPERATOR_KEY, source: 'env' };
  const path = join(dataDir, OPERATOR_KEY_FILE);
  if (existsSync(path)) {
    const key = readFileSync(path, 'utf8').trim();
    if (key.length >= 16) return { key, source: 'file' };
  }
  mkdirSync(dataDir, { recursive: true });
  const key = `para-op-${randomBytes(24).toString('base64url')}`;
  writeSecret(path, `${key}\n`);
  return { key, source: 'generated' };
}

const demoKeysSchema = z.record(z.string(), z.string());

export interface DemoTenant {
  name: string;
  key: string;
  /** True when the tenant or its key was made by this start. */
  created: boolean;
}

/** A stored key still opens the gateway (the database may have been replaced, or the key deleted). */
async function keyWorks(url: string, key: string): Promise<boolean> {
  const response = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  await response.body?.cancel();
  return response.ok;
}

/** Makes sure acme and globex exist with a working key each; creates what is missing and stores the keys. */
export async function ensureDemoTenants(admin: ParaClient, url: string, dataDir: string): Promise<DemoTenant[]> {
  const path = join(dataDir, DEMO_KEYS_FILE);
  let stored: Record<string, string> = {};
  if (existsSync(path)) {
    const parsed = demoKeysSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (parsed.success) stored = parsed.data;
  }
  const existing = new Set((await admin.tenants.list()).map((t) => t.name));
  const tenants: DemoTenant[] = [];
  for (const name of DEMO_TENANTS) {
    const key = stored[name];
    if (existing.has(name) && key && (await keyWorks(url, key))) {
      tenants.push({ name, key, created: false });
      continue;
    }
    if (!existing.has(name)) {
      try {
        await admin.tenants.create({ name });
      } catch (err) {
        // Another start racing this one made it first: fine, it exists.
        if (!(err instanceof ParaApiError && err.status === 409)) throw err;
      }
    }
    tenants.push({ name, key: (await admin.keys.create(name)).key, created: true });
  }
  if (tenants.some((t) => t.created)) writeSecret(path, `${JSON.stringify(Object.fromEntries(tenants.map((t) => [t.name, t.key])), null, 2)}\n`);
  return tenants;
}

// Options of one gateway instance, validated once at start so a bad value fails fast with a clear message.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { NAME_PATTERN, NAME_RULE } from './names.js';

/** The repository root, found from this file (src/ or dist/ sit one level below the package). */
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export const WORKER_ADDRESS = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;

export const sharedAdapterSeedSchema = z.object({
  name: z.string().regex(NAME_PATTERN, NAME_RULE),
  dir: z.string().min(1),
});
export type SharedAdapterSeed = z.infer<typeof sharedAdapterSeedSchema>;

export const gatewayOptionsSchema = z.object({
  host: z.string().default('127.0.0.1'),
  /** 0 picks a free port; the bound URL is returned by startGateway. */
  port: z.number().int().min(0).max(65535).default(8080),
  workers: z.array(z.string().regex(WORKER_ADDRESS, 'workers are host:port')).default([]),
  /**
   * A postgres:// (or postgresql://) URL: the database several replicas share. Anything else is a SQLite file,
   * for one gateway; ':memory:' keeps everything in memory (tests).
   */
  db: z.string().min(1).default('para-gateway.db'),
  /** PostgreSQL connections this gateway opens at most (default 10); refused with SQLite, which has one. */
  dbPoolSize: z.number().int().positive().max(1000).optional(),
  /**
   * Uploaded adapters are stored below this folder (as blobs named by their SHA-256); replicas must all see
   * the same folder (a shared filesystem).
   */
  dataDir: z.string().default('para-data'),
  /** Unset: only tenant keys work and the admin API is closed. */
  operatorKey: z
    .string()
    .min(16, 'the operator key needs at least 16 characters')
    .refine((key) => !key.startsWith('replace-with'), 'the operator key is still the placeholder of deploy/systemd/gateway.env: put your own')
    .optional(),
  /** The backbone's name as reported in /admin/v1/overview and /v1/models (`base`'s owner). */
  backbone: z.string().min(1, 'the backbone needs a name (--backbone)').default('backbone'),
  sharedAdapters: z.array(sharedAdapterSeedSchema).default([]),
  /** Per-tenant defaults for new tenants that do not name their own limits. */
  defaultRpm: z.number().int().positive().default(600),
  defaultTpm: z.number().int().positive().default(200_000),
  /** JSON bodies above this get 413. */
  maxBodyBytes: z.number().int().positive().default(1024 * 1024),
  /** Each uploaded weights file; the worker accepts gRPC messages up to 64 MiB, so stay below. */
  maxAdapterBytes: z.number().int().positive().default(60 * 1024 * 1024),
  maxConfigBytes: z.number().int().positive().default(64 * 1024),
  /** Highest `n` (fan-out) accepted in one request. */
  maxChoices: z.number().int().positive().default(8),
  healthIntervalMs: z.number().int().positive().default(2000),
  /** How often every worker's adapters are compared with the registry, and deleted versions unloaded. */
  adapterSweepMs: z.number().int().positive().default(30_000),
  healthTimeoutMs: z.number().int().positive().default(3000),
  protoPath: z.string().default(`${repoRoot}proto/engine.proto`),
  dashboardDir: z.string().default(`${repoRoot}dashboard/dist`),
  qualityResults: z.string().default(`${repoRoot}benchmarks/quality/results.json`),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type GatewayOptions = z.input<typeof gatewayOptionsSchema>;
export type GatewayConfig = z.output<typeof gatewayOptionsSchema>;

export function parseGatewayOptions(options: GatewayOptions): GatewayConfig {
  const result = gatewayOptionsSchema.safeParse(options);
  if (!result.success) {
    const detail = result.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ');
    throw new Error(`invalid gateway options: ${detail}`);
  }
  if (!existsSync(result.data.protoPath)) {
    throw new Error(`invalid gateway options: protoPath ${result.data.protoPath} does not exist`);
  }
  return result.data;
}

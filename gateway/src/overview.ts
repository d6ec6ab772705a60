// GET /admin/v1/overview: the dashboard's one object (shape in docs/gateway-api.md).
import { z } from 'zod';
import type { TenantStore } from './db/tenants.js';
import type { UsageStore } from './db/usage.js';
import { readQuality } from './quality.js';
import { type AdapterRegistry, adapterId } from './registry/registry.js';
import type { TrafficWindow } from './traffic.js';
import type { WorkerPool } from './workers/pool.js';

const nullableNumber = z.number().nullable();

export const overviewSchema = z.object({
  now: z.number().int(),
  backbone: z.string(),
  tenants: z.array(z.object({ name: z.string(), adapters: z.number().int(), requests: z.number().int(), prompt_tokens: z.number().int(), completion_tokens: z.number().int() })),
  adapters: z.array(z.object({ id: z.string(), owner: z.string().nullable(), versions: z.number().int(), requests: z.number().int(), completion_tokens: z.number().int() })),
  workers: z.array(
    z.object({
      address: z.string(),
      healthy: z.boolean(),
      /** Sequences it decodes at once and tokens per sequence, from its Health reply (0 until one came). */
      slots: z.number().int(),
      max_context: z.number().int(),
      inflight: z.number().int(),
      running: z.number().int(),
      waiting: z.number().int(),
      free_slots: z.number().int(),
      adapters_loaded: z.number().int(),
    }),
  ),
  series: z.array(z.object({ t: z.number().int(), requests: z.number().int(), tokens: z.number().int(), p50_ms: nullableNumber, p99_ms: nullableNumber })),
  latency_ms: z.object({ p50: nullableNumber, p90: nullableNumber, p99: nullableNumber }),
  quality: z.object({
    metric: z.string(),
    rows: z.array(z.object({ task: z.string(), method: z.string(), median: z.number(), min: z.number(), max: z.number(), seeds: z.number().int() })),
  }),
});
export type Overview = z.infer<typeof overviewSchema>;

export interface OverviewSources {
  backbone: string;
  tenants: TenantStore;
  usage: UsageStore;
  registry: AdapterRegistry;
  pool: WorkerPool;
  traffic: TrafficWindow;
  qualityResults: string;
}

export async function buildOverview(s: OverviewSources): Promise<Overview> {
  const [adapterRows, byTenant, byModel, tenants] = await Promise.all([s.registry.all(), s.usage.byTenant(), s.usage.byModel(), s.tenants.list()]);
  const usageByTenant = new Map(byTenant.map((u) => [u.tenant, u]));
  const usageByModel = new Map(byModel.map((u) => [u.model, u]));
  const versions = new Map<string, { owner: string | null; versions: number }>();
  for (const row of adapterRows) {
    const id = adapterId(row.owner, row.name);
    versions.set(id, { owner: row.owner || null, versions: (versions.get(id)?.versions ?? 0) + 1 });
  }
  const adapterCount = (tenant: string) => new Set(adapterRows.filter((r) => r.owner === tenant).map((r) => r.name)).size;
  return {
    now: Date.now(),
    backbone: s.backbone,
    tenants: tenants.map((t) => {
      const u = usageByTenant.get(t.name);
      return { name: t.name, adapters: adapterCount(t.name), requests: u?.requests ?? 0, prompt_tokens: u?.prompt_tokens ?? 0, completion_tokens: u?.completion_tokens ?? 0 };
    }),
    adapters: [...versions].map(([id, v]) => ({ id, owner: v.owner, versions: v.versions, requests: usageByModel.get(id)?.requests ?? 0, completion_tokens: usageByModel.get(id)?.completion_tokens ?? 0 })),
    workers: s.pool.workers.map((w) => ({
      address: w.address,
      healthy: w.healthy,
      slots: w.maxContext > 0 ? w.slots : 0,
      max_context: w.maxContext,
      inflight: w.inflight,
      running: w.stats?.running ?? 0,
      waiting: w.stats?.waiting ?? 0,
      free_slots: w.stats?.free_slots ?? 0,
      adapters_loaded: w.stats?.adapters_loaded ?? 0,
    })),
    series: s.traffic.series(),
    latency_ms: s.traffic.latency(),
    quality: await readQuality(s.qualityResults),
  };
}

// Shapes of the admin API's replies (docs/gateway-api.md), for the client.

/** A tenant as the admin API reports it (one declaration, shared with the server's store). */
export type { Tenant } from '../db/tenants.js';

export interface ApiKey {
  id: string;
  prefix: string;
  created: number;
}

export interface CreatedApiKey extends ApiKey {
  /** The key itself; the gateway keeps only its hash, so this is the one chance to read it. */
  key: string;
}

/** An adapter as the registry reports it (one declaration, shared with the server). */
export type { AdapterView as Adapter } from '../registry/registry.js';

export interface TenantUsage {
  tenant: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface Model {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

export interface Overview {
  now: number;
  backbone: string;
  tenants: { name: string; adapters: number; requests: number; prompt_tokens: number; completion_tokens: number }[];
  adapters: { id: string; owner: string | null; versions: number; requests: number; completion_tokens: number }[];
  workers: { address: string; healthy: boolean; slots: number; max_context: number; inflight: number; running: number; waiting: number; free_slots: number; adapters_loaded: number }[];
  series: { t: number; requests: number; tokens: number; p50_ms: number | null; p99_ms: number | null }[];
  latency_ms: { p50: number | null; p90: number | null; p99: number | null };
  quality: { metric: string; rows: { task: string; method: string; median: number; min: number; max: number; seeds: number }[] };
}

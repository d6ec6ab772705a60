/**
 * The body of `GET /admin/v1/overview`, as specified in docs/gateway-api.md.
 * Times are milliseconds since the Unix epoch on the gateway's clock.
 */
export interface Overview {
  now: number;
  backbone: string;
  tenants: TenantStats[];
  adapters: AdapterStats[];
  workers: WorkerStats[];
  /** One entry per second for the last 120 seconds, oldest first. */
  series: SeriesPoint[];
  latency_ms: LatencySummary;
  quality: QualityTable;
}

export interface TenantStats {
  name: string;
  adapters: number;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface AdapterStats {
  /** `copa` for a shared adapter, `acme/support` for a tenant's. */
  id: string;
  /** The owning tenant; `null` for a shared adapter. */
  owner: string | null;
  versions: number;
  requests: number;
  completion_tokens: number;
}

export interface WorkerStats {
  address: string;
  healthy: boolean;
  inflight: number;
  running: number;
  waiting: number;
  free_slots: number;
  adapters_loaded: number;
}

export interface SeriesPoint {
  /** Start of the second this entry covers. */
  t: number;
  /** Requests finished in that second. */
  requests: number;
  /** Tokens generated in that second. */
  tokens: number;
  /** `null` when no request finished in that second. */
  p50_ms: number | null;
  p99_ms: number | null;
}

export interface LatencySummary {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface QualityTable {
  metric: string;
  rows: QualityRow[];
}

export interface QualityRow {
  task: string;
  method: string;
  median: number;
  min: number;
  max: number;
  seeds: number;
}

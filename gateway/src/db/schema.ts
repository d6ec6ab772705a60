// The tables as Kysely sees them; the migrations (migrations.ts) create them on SQLite and on PostgreSQL alike.
import type { Generated, Kysely } from 'kysely';

export interface TenantsTable {
  id: Generated<number>;
  name: string;
  rpm: number;
  tpm: number;
  created: number;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: number;
  hash: string;
  prefix: string;
  created: number;
}

export interface AdaptersTable {
  id: Generated<number>;
  /** Tenant name; '' for a shared adapter. */
  owner: string;
  name: string;
  version: number;
  /** SHA-256 of the weights: also the name of their blob. */
  sha256: string;
  /** SHA-256 of adapter_config.json, the name of its blob; null for a version stored as a folder (`dir`). */
  config_sha256: string | null;
  bytes: number;
  parameters: number;
  /** The folder of a version stored before blobs; '' for blob-stored versions. */
  dir: string;
  created: number;
  /** 0 live, 1 deleted (2, pending, was used before blobs: such rows are marked deleted by migration 002). */
  deleted: Generated<number>;
  /** 'para' or 'lora' (from the config's peft_type); versions stored before migration 004 are PARA. */
  kind: Generated<string>;
}

export interface TenantUsageTable {
  /** tenants.id; 0 for the operator. */
  tenant_id: number;
  /** Model id without version ('base' for the bare backbone). */
  model: string;
  requests: Generated<number>;
  prompt_tokens: Generated<number>;
  completion_tokens: Generated<number>;
}

/** Usage of the requests that named their end user (OpenAI's `user` or `safety_identifier`). */
export interface UserUsageTable extends TenantUsageTable {
  end_user: string;
}

export interface Tables {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  adapters: AdaptersTable;
  tenant_usage: TenantUsageTable;
  user_usage: UserUsageTable;
}

export type Db = Kysely<Tables>;

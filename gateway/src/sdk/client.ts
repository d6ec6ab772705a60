// A small typed client for the gateway's admin and adapter API, over fetch (Node 20.19+; it reads adapter
// directories from disk, so it is not a browser module).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Adapter, ApiKey, CreatedApiKey, Model, Overview, Tenant, TenantUsage } from './types.js';

/** An error reply from the gateway, in OpenAI's error shape. */
export class ParaApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string | null,
    readonly code: string | null,
    readonly param: string | null,
  ) {
    super(message);
    this.name = 'ParaApiError';
  }
}

export interface ParaClientOptions {
  /** The gateway's base URL, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** The operator key for tenants, keys, usage and overview; a tenant key works for adapters and models. */
  apiKey: string;
  fetch?: typeof fetch;
}

export interface AdapterUpload {
  name: string;
  /** adapter_config.json contents */
  config: Uint8Array | string;
  /** adapter_model.safetensors contents */
  weights: Uint8Array;
  /** operator only: make it a shared adapter */
  shared?: boolean;
  /** operator only: upload for this tenant */
  tenant?: string;
}

/** `acme/support` → /acme/support, `copa` → /copa */
const adapterPath = (id: string) => id.split('/').map(encodeURIComponent).join('/');

export class ParaClient {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: ParaClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? fetch;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.options.apiKey}` };
    let payload: RequestInit['body'];
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const response = await this.fetchImpl(`${this.baseUrl}${path}`, { method, headers, body: payload });
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) {
      const error = (json as { error?: { message?: string; type?: string; code?: string; param?: string } } | undefined)?.error;
      throw new ParaApiError(response.status, error?.message ?? `HTTP ${response.status}`, error?.type ?? null, error?.code ?? null, error?.param ?? null);
    }
    return json as T;
  }

  readonly tenants = {
    create: (tenant: { name: string; rpm?: number; tpm?: number }) => this.request<Tenant>('POST', '/admin/v1/tenants', tenant),
    list: async () => (await this.request<{ data: Tenant[] }>('GET', '/admin/v1/tenants')).data,
    /** Changes a tenant's requests and/or tokens per minute; its next request is admitted under them. */
    setLimits: (name: string, limits: { rpm?: number; tpm?: number }) =>
      this.request<Tenant>('PATCH', `/admin/v1/tenants/${encodeURIComponent(name)}`, limits),
    delete: (name: string) => this.request<{ deleted: true; name: string }>('DELETE', `/admin/v1/tenants/${encodeURIComponent(name)}`),
  };

  readonly keys = {
    create: (tenant: string) => this.request<CreatedApiKey>('POST', `/admin/v1/tenants/${encodeURIComponent(tenant)}/keys`),
    list: async (tenant: string) => (await this.request<{ data: ApiKey[] }>('GET', `/admin/v1/tenants/${encodeURIComponent(tenant)}/keys`)).data,
    delete: (id: string) => this.request<{ deleted: true; id: string }>('DELETE', `/admin/v1/keys/${encodeURIComponent(id)}`),
  };

  readonly adapters = {
    upload: (upload: AdapterUpload) => {
      const form = new FormData();
      form.set('name', upload.name);
      if (upload.shared) form.set('shared', 'true');
      if (upload.tenant) form.set('tenant', upload.tenant);
      form.set('config', new Blob([upload.config], { type: 'application/json' }), 'adapter_config.json');
      form.set('weights', new Blob([upload.weights], { type: 'application/octet-stream' }), 'adapter_model.safetensors');
      return this.request<Adapter>('POST', '/v1/adapters', form);
    },
    /** Uploads adapter_config.json and adapter_model.safetensors from a directory (Node only). */
    uploadDirectory: async (dir: string, upload: Omit<AdapterUpload, 'config' | 'weights'>) => {
      const [config, weights] = await Promise.all([readFile(join(dir, 'adapter_config.json')), readFile(join(dir, 'adapter_model.safetensors'))]);
      return this.adapters.upload({ ...upload, config, weights });
    },
    list: async () => (await this.request<{ data: Adapter[] }>('GET', '/v1/adapters')).data,
    get: (id: string) => this.request<Adapter>('GET', `/v1/adapters/${adapterPath(id)}`),
    delete: (id: string, options: { version?: number } = {}) =>
      this.request<{ deleted: true; id: string }>('DELETE', `/v1/adapters/${adapterPath(id)}${options.version ? `?version=${options.version}` : ''}`),
  };

  usage = async () => (await this.request<{ data: TenantUsage[] }>('GET', '/admin/v1/usage')).data;
  overview = () => this.request<Overview>('GET', '/admin/v1/overview');
  models = async () => (await this.request<{ data: Model[] }>('GET', '/v1/models')).data;
}

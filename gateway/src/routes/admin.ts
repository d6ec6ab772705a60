// /admin/v1: tenants, their keys, usage, and the dashboard's overview (operator key only).
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { KeyStore } from '../db/keys.js';
import type { Store } from '../db/store.js';
import type { TenantStore } from '../db/tenants.js';
import type { UsageStore } from '../db/usage.js';
import { conflict, notFound } from '../errors.js';
import type { RateLimiter } from '../limits.js';
import { conflictResponse, errorResponses } from '../openapi.js';
import { type Overview, overviewSchema } from '../overview.js';
import { LEGACY_NAME_PATTERN, NAME_PATTERN, NAME_RULE } from '../names.js';
import type { GatewayMetrics } from '../metrics.js';
import type { AdapterRegistry } from '../registry/registry.js';

export interface AdminRouteDeps {
  store: Pick<Store, 'removeTenant'>;
  tenants: TenantStore;
  keys: KeyStore;
  usage: UsageStore;
  registry: AdapterRegistry;
  limiter: RateLimiter;
  metrics: Pick<GatewayMetrics, 'forget'>;
  defaultRpm: number;
  defaultTpm: number;
  overview: () => Promise<Overview>;
}

const tenantSchema = z.object({ id: z.number().int(), name: z.string(), rpm: z.number().int(), tpm: z.number().int(), created: z.number().int() });
/** Limits are stored in SQLite INTEGER columns and compared with JS numbers: keep them exact. */
const rpm = z.number().int().positive().max(Number.MAX_SAFE_INTEGER).describe('requests per minute (a request with n choices counts n)');
const tpm = z.number().int().positive().max(Number.MAX_SAFE_INTEGER).describe('tokens (prompt + completion) per minute');
const createTenantSchema = z.object({
  name: z.string().regex(NAME_PATTERN, `invalid tenant name: ${NAME_RULE}`),
  rpm: rpm.optional(),
  tpm: tpm.optional(),
});
const limitsSchema = z
  .object({ rpm: rpm.optional(), tpm: tpm.optional() })
  .refine((l) => l.rpm !== undefined || l.tpm !== undefined, 'give rpm, tpm or both')
  .meta({ minProperties: 1 });
const keySchema = z.object({ id: z.string(), prefix: z.string(), created: z.number().int() });
// Existing tenants are looked up with the legacy grammar, so one named before the dot was dropped can still be
// managed and deleted.
const tenantParams = z.object({ name: z.string().regex(LEGACY_NAME_PATTERN, NAME_RULE) });
const usageSchema = z.object({ tenant: z.string(), requests: z.number().int(), prompt_tokens: z.number().int(), completion_tokens: z.number().int() });

export function adminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  const common = { tags: ['admin'], security: [{ bearer: [] }] };
  const tenantOr404 = async (name: string) => {
    const tenant = await deps.tenants.byName(name);
    if (!tenant) throw notFound(`unknown tenant '${name}'`);
    return tenant;
  };

  typed.post('/admin/v1/tenants', {
    schema: { ...common, summary: 'Create a tenant', body: createTenantSchema, response: { 201: tenantSchema, ...errorResponses, ...conflictResponse } },
    handler: async (request, reply) => {
      const { name, rpm = deps.defaultRpm, tpm = deps.defaultTpm } = request.body;
      const tenant = await deps.tenants.create(name, rpm, tpm);
      if (!tenant) throw conflict(`tenant '${name}' already exists`);
      return reply.code(201).send(tenant);
    },
  });

  typed.get('/admin/v1/tenants', {
    schema: { ...common, summary: 'List tenants', response: { 200: z.object({ data: z.array(tenantSchema) }), ...errorResponses } },
    handler: async () => ({ data: await deps.tenants.list() }),
  });

  typed.patch('/admin/v1/tenants/:name', {
    schema: { ...common, summary: "Change a tenant's limits (from its next request on)", params: tenantParams, body: limitsSchema, response: { 200: tenantSchema, ...errorResponses } },
    handler: async (request) => {
      const tenant = await deps.tenants.update((await tenantOr404(request.params.name)).name, request.body);
      if (!tenant) throw notFound(`unknown tenant '${request.params.name}'`);
      return tenant;
    },
  });

  typed.delete('/admin/v1/tenants/:name', {
    schema: { ...common, summary: 'Delete a tenant with its keys, adapters and usage', params: tenantParams, response: { 200: z.object({ deleted: z.literal(true), name: z.string() }), ...errorResponses } },
    handler: async (request) => {
      const removed = await deps.store.removeTenant(request.params.name);
      if (!removed) throw notFound(`unknown tenant '${request.params.name}'`);
      // Usage and limits belong to the id, which is never reused: a stream still running now is not recorded
      // later, and a new tenant of the same name starts from nothing.
      await deps.registry.dispose(removed.adapters);
      await deps.limiter.forget(removed.tenant.id);
      await deps.metrics.forget({ tenant: removed.tenant.name }); // its adapters' series went with dispose
      return { deleted: true as const, name: removed.tenant.name };
    },
  });

  typed.post('/admin/v1/tenants/:name/keys', {
    schema: { ...common, summary: 'Create an API key (shown once)', params: tenantParams, response: { 201: keySchema.extend({ key: z.string() }), ...errorResponses } },
    handler: async (request, reply) => {
      const created = await deps.keys.create((await tenantOr404(request.params.name)).id);
      if (!created) throw notFound(`unknown tenant '${request.params.name}'`); // deleted meanwhile
      return reply.code(201).send(created);
    },
  });

  typed.get('/admin/v1/tenants/:name/keys', {
    schema: { ...common, summary: "A tenant's keys (prefixes only)", params: tenantParams, response: { 200: z.object({ data: z.array(keySchema) }), ...errorResponses } },
    handler: async (request) => ({ data: await deps.keys.list((await tenantOr404(request.params.name)).id) }),
  });

  typed.delete('/admin/v1/keys/:id', {
    schema: { ...common, summary: 'Revoke a key', params: z.object({ id: z.string().max(64) }), response: { 200: z.object({ deleted: z.literal(true), id: z.string() }), ...errorResponses } },
    handler: async (request) => {
      if (!(await deps.keys.delete(request.params.id))) throw notFound(`unknown key '${request.params.id}'`);
      return { deleted: true as const, id: request.params.id };
    },
  });

  typed.get('/admin/v1/usage/users', {
    schema: {
      ...common,
      summary: "Token usage per end user: the requests that named one (OpenAI's `user` or `safety_identifier`)",
      response: { 200: z.object({ data: z.array(usageSchema.extend({ model: z.string(), user: z.string() })) }), ...errorResponses },
    },
    handler: async () => ({ data: await deps.usage.byUser() }),
  });
  typed.get('/admin/v1/usage', {
    schema: { ...common, summary: 'Token usage per tenant', response: { 200: z.object({ data: z.array(usageSchema) }), ...errorResponses } },
    handler: async () => ({ data: await deps.usage.byTenant() }),
  });

  typed.get('/admin/v1/overview', {
    schema: { ...common, summary: "Everything the dashboard shows", response: { 200: overviewSchema, ...errorResponses } },
    handler: async () => deps.overview(),
  });
}

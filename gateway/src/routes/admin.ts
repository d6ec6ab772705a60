// /admin/v1: tenants, their keys, usage, and the dashboard's overview (operator key only).
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { KeyStore } from '../db/keys.js';
import type { TenantStore } from '../db/tenants.js';
import type { UsageStore } from '../db/usage.js';
import { conflict, notFound } from '../errors.js';
import type { RateLimiter } from '../limits.js';
import { errorResponses } from '../openapi.js';
import { type Overview, overviewSchema } from '../overview.js';
import { type AdapterRegistry, NAME_PATTERN } from '../registry/registry.js';

export interface AdminRouteDeps {
  tenants: TenantStore;
  keys: KeyStore;
  usage: UsageStore;
  registry: AdapterRegistry;
  limiter: RateLimiter;
  defaultRpm: number;
  defaultTpm: number;
  overview: () => Promise<Overview>;
}

const tenantSchema = z.object({ id: z.number().int(), name: z.string(), rpm: z.number().int(), tpm: z.number().int(), created: z.number().int() });
const createTenantSchema = z.object({
  name: z.string().regex(NAME_PATTERN, 'tenant names match [a-z0-9][a-z0-9._-]{0,63}'),
  rpm: z.number().int().positive().optional().describe('requests per minute'),
  tpm: z.number().int().positive().optional().describe('tokens (prompt + completion) per minute'),
});
const keySchema = z.object({ id: z.string(), prefix: z.string(), created: z.number().int() });
const tenantParams = z.object({ name: z.string().regex(NAME_PATTERN, 'tenant names match [a-z0-9][a-z0-9._-]{0,63}') });
const usageSchema = z.object({ tenant: z.string(), requests: z.number().int(), prompt_tokens: z.number().int(), completion_tokens: z.number().int() });

export function adminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  const common = { tags: ['admin'], security: [{ bearer: [] }] };
  const tenantOr404 = (name: string) => {
    const tenant = deps.tenants.byName(name);
    if (!tenant) throw notFound(`unknown tenant '${name}'`);
    return tenant;
  };

  typed.post('/admin/v1/tenants', {
    schema: { ...common, summary: 'Create a tenant', body: createTenantSchema, response: { 201: tenantSchema, ...errorResponses } },
    handler: async (request, reply) => {
      const { name, rpm = deps.defaultRpm, tpm = deps.defaultTpm } = request.body;
      const tenant = deps.tenants.create(name, rpm, tpm);
      if (!tenant) throw conflict(`tenant '${name}' already exists`);
      return reply.code(201).send(tenant);
    },
  });

  typed.get('/admin/v1/tenants', {
    schema: { ...common, summary: 'List tenants', response: { 200: z.object({ data: z.array(tenantSchema) }), ...errorResponses } },
    handler: async () => ({ data: deps.tenants.list() }),
  });

  typed.delete('/admin/v1/tenants/:name', {
    schema: { ...common, summary: 'Delete a tenant with its keys, adapters and usage', params: tenantParams, response: { 200: z.object({ deleted: z.literal(true), name: z.string() }), ...errorResponses } },
    handler: async (request) => {
      const { name } = tenantOr404(request.params.name);
      deps.tenants.delete(name);
      await deps.registry.deleteOwner(name);
      deps.usage.forgetTenant(name);
      deps.limiter.forget(name);
      return { deleted: true as const, name };
    },
  });

  typed.post('/admin/v1/tenants/:name/keys', {
    schema: { ...common, summary: 'Create an API key (shown once)', params: tenantParams, response: { 201: keySchema.extend({ key: z.string() }), ...errorResponses } },
    handler: async (request, reply) => reply.code(201).send(deps.keys.create(tenantOr404(request.params.name).id)),
  });

  typed.get('/admin/v1/tenants/:name/keys', {
    schema: { ...common, summary: "A tenant's keys (prefixes only)", params: tenantParams, response: { 200: z.object({ data: z.array(keySchema) }), ...errorResponses } },
    handler: async (request) => ({ data: deps.keys.list(tenantOr404(request.params.name).id) }),
  });

  typed.delete('/admin/v1/keys/:id', {
    schema: { ...common, summary: 'Revoke a key', params: z.object({ id: z.string().max(64) }), response: { 200: z.object({ deleted: z.literal(true), id: z.string() }), ...errorResponses } },
    handler: async (request) => {
      if (!deps.keys.delete(request.params.id)) throw notFound(`unknown key '${request.params.id}'`);
      return { deleted: true as const, id: request.params.id };
    },
  });

  typed.get('/admin/v1/usage', {
    schema: { ...common, summary: 'Token usage per tenant', response: { 200: z.object({ data: z.array(usageSchema) }), ...errorResponses } },
    handler: async () => ({ data: deps.usage.byTenant() }),
  });

  typed.get('/admin/v1/overview', {
    schema: { ...common, summary: "Everything the dashboard shows", response: { 200: overviewSchema, ...errorResponses } },
    handler: async () => deps.overview(),
  });
}

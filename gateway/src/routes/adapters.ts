// /v1/adapters: upload (multipart), list, show and delete adapters, for tenants (their own) and the operator.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Caller } from '../auth.js';
import type { TenantStore } from '../db/tenants.js';
import { ApiError, badRequest, forbidden, notFound, tooLarge } from '../errors.js';
import { FORM_BODY, errorResponses } from '../openapi.js';
import type { AdapterFiles } from '../registry/files.js';
import { LEGACY_NAME_PATTERN, NAME_PATTERN, NAME_RULE } from '../names.js';
import type { AdapterRegistry, AdapterView } from '../registry/registry.js';

export interface AdapterRouteDeps {
  registry: AdapterRegistry;
  tenants: TenantStore;
  maxAdapterBytes: number;
  maxConfigBytes: number;
}

export const adapterSchema = z.object({
  id: z.string(),
  owner: z.string().nullable(),
  version: z.number().int(),
  sha256: z.string(),
  bytes: z.number().int(),
  parameters: z.number().int(),
  created: z.number().int(),
  versions: z.array(z.number().int()),
  kind: z.enum(['para', 'lora']).describe('PARA or peft LoRA (from the config\'s peft_type)'),
}) satisfies z.ZodType<AdapterView>; // the registry's view is the one declaration of this shape

const uploadFieldsSchema = z.object({
  name: z.string().regex(NAME_PATTERN, `invalid name: ${NAME_RULE}`),
  shared: z.enum(['true', 'false', '1', '0']).optional(),
  tenant: z.string().regex(LEGACY_NAME_PATTERN, `invalid tenant: ${NAME_RULE}`).optional(),
});

/** The multipart body, for the OpenAPI document (the handler reads the parts itself). */
export const uploadFormSchema = z.object({
  name: z.string().regex(NAME_PATTERN).describe('the adapter name; a second upload of a name is its next version'),
  config: z.string().describe('adapter_config.json (a file part)').meta({ format: 'binary' }),
  weights: z.string().describe('adapter_model.safetensors (a file part)').meta({ format: 'binary' }),
  shared: z.enum(['true', 'false', '1', '0']).optional().describe('operator only: a shared adapter'),
  tenant: z.string().regex(NAME_PATTERN).optional().describe('operator only: upload for this tenant'),
});

// Existing adapters are looked up with the legacy grammar, so one named before the dot was dropped can still
// be listed and deleted.
const namePart = z.string().regex(LEGACY_NAME_PATTERN, NAME_RULE);
const versionQuery = z.object({ version: z.coerce.number().int().positive().optional() });

/** Reads the multipart form: text fields, and the two files into memory (both are bounded by the limits). */
async function readUpload(request: FastifyRequest, deps: AdapterRouteDeps) {
  if (!request.isMultipart()) throw badRequest('send multipart/form-data with fields name, config and weights');
  const fields: Record<string, string> = {};
  const files: Partial<AdapterFiles> = {};
  const parts = request.parts({ limits: { fileSize: deps.maxAdapterBytes, files: 2, fields: 8, parts: 10, fieldSize: 1024 } });
  try {
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== 'config' && part.fieldname !== 'weights') {
          part.file.resume(); // drain it
          throw badRequest(`unexpected file field '${part.fieldname}': send config and weights`, part.fieldname);
        }
        files[part.fieldname] = await part.toBuffer();
      } else {
        fields[part.fieldname] = String(part.value);
      }
    }
  } catch (err) {
    throw malformedUpload(err);
  }
  const parsed = uploadFieldsSchema.safeParse(fields);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw badRequest(issue.path.length ? issue.message : 'the name field is required', String(issue.path[0] ?? 'name'));
  }
  if (!files.config) throw badRequest('the config file (adapter_config.json) is missing', 'config');
  if (!files.weights) throw badRequest('the weights file (adapter_model.safetensors) is missing', 'weights');
  if (files.config.length > deps.maxConfigBytes) throw tooLarge(`adapter_config.json is over ${deps.maxConfigBytes} bytes`);
  return { fields: parsed.data, files: files as AdapterFiles };
}

/**
 * What reading the multipart body threw, as the client's error: our own ApiErrors and @fastify/multipart's
 * (limits: 413, too many parts: 4xx) carry their status; anything else the parser threw (a truncated body,
 * a missing boundary, a connection cut mid-upload) can only come from the body, so it is a 400.
 */
function malformedUpload(err: unknown): unknown {
  if (err instanceof ApiError) return err;
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return err;
  return badRequest(`malformed multipart body: ${err instanceof Error ? err.message : String(err)}`, null, 'invalid_multipart');
}

/**
 * The owner an upload goes to: the calling tenant, or for the operator `shared=true` or `tenant=<name>`; with the
 * owning tenant's id (null when shared), which the stored row must still match.
 */
async function uploadOwner(caller: Caller, fields: z.infer<typeof uploadFieldsSchema>, tenants: TenantStore): Promise<{ owner: string; tenantId: number | null }> {
  const shared = fields.shared === 'true' || fields.shared === '1';
  if (caller.kind === 'tenant') {
    if (shared) throw forbidden('only the operator uploads shared adapters');
    if (fields.tenant && fields.tenant !== caller.tenant.name) throw forbidden('a tenant key uploads to its own tenant only');
    return { owner: caller.tenant.name, tenantId: caller.tenant.id };
  }
  if (shared && fields.tenant) throw badRequest('give shared=true or tenant=<name>, not both', 'tenant');
  if (shared) return { owner: '', tenantId: null };
  if (!fields.tenant) throw badRequest('operator uploads need shared=true or tenant=<name>', 'tenant');
  const tenant = await tenants.byName(fields.tenant);
  if (!tenant) throw notFound(`unknown tenant '${fields.tenant}'`, 'not_found', 'tenant');
  return { owner: fields.tenant, tenantId: tenant.id };
}

export function adapterRoutes(app: FastifyInstance, deps: AdapterRouteDeps): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  const common = { tags: ['adapters'], security: [{ bearer: [] }] };

  typed.post('/v1/adapters', {
    schema: {
      ...common,
      summary: 'Upload an adapter (next version if the name exists)',
      description:
        'multipart/form-data: `name`, `config` (adapter_config.json), `weights` (adapter_model.safetensors); the operator adds `shared=true` or `tenant=<name>`.',
      consumes: ['multipart/form-data'],
      [FORM_BODY]: uploadFormSchema,
      response: { 201: adapterSchema, ...errorResponses },
    },
    handler: async (request, reply) => {
      const { fields, files } = await readUpload(request, deps);
      const { owner, tenantId } = await uploadOwner(request.caller, fields, deps.tenants);
      const adapter = await deps.registry.upload(owner, fields.name, files, tenantId);
      request.log.info({ adapter: adapter.id, version: adapter.version, bytes: adapter.bytes }, 'adapter uploaded');
      return reply.code(201).send(adapter);
    },
  });

  typed.get('/v1/adapters', {
    schema: { ...common, summary: 'Adapters the caller sees, latest version each', response: { 200: z.object({ data: z.array(adapterSchema) }), ...errorResponses } },
    handler: async (request) => ({ data: await deps.registry.list(request.caller) }),
  });

  typed.get('/v1/adapters/:name', {
    schema: { ...common, summary: 'A shared adapter', params: z.object({ name: namePart }), response: { 200: adapterSchema, ...errorResponses } },
    handler: async (request) => deps.registry.get(request.caller, '', request.params.name),
  });

  typed.get('/v1/adapters/:tenant/:name', {
    schema: { ...common, summary: "A tenant's adapter", params: z.object({ tenant: namePart, name: namePart }), response: { 200: adapterSchema, ...errorResponses } },
    handler: async (request) => deps.registry.get(request.caller, request.params.tenant, request.params.name),
  });

  const deleted = z.object({ deleted: z.literal(true), id: z.string() });
  typed.delete('/v1/adapters/:name', {
    schema: { ...common, summary: 'Delete a shared adapter (operator), or one version', params: z.object({ name: namePart }), querystring: versionQuery, response: { 200: deleted, ...errorResponses } },
    handler: async (request) => ({
      deleted: true as const,
      id: await deps.registry.delete(request.caller, '', request.params.name, request.query.version),
    }),
  });

  typed.delete('/v1/adapters/:tenant/:name', {
    schema: { ...common, summary: "Delete a tenant's adapter, or one version", params: z.object({ tenant: namePart, name: namePart }), querystring: versionQuery, response: { 200: deleted, ...errorResponses } },
    handler: async (request) => ({
      deleted: true as const,
      id: await deps.registry.delete(request.caller, request.params.tenant, request.params.name, request.query.version),
    }),
  });
}

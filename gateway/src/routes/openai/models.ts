// GET /v1/models: `base` plus every adapter the caller may use (its own and shared; all for the operator).
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { modelNotFound } from '../../errors.js';
import { errorResponses } from '../../openapi.js';
import { type AdapterRegistry, BASE_MODEL } from '../../registry/registry.js';
import { modelListSchema, modelSchema } from './schemas.js';

type Model = z.infer<typeof modelSchema>;

export function modelRoutes(app: FastifyInstance, registry: AdapterRegistry, backbone: string, startedAt: number): void {
  const list = async (caller: Parameters<AdapterRegistry['list']>[0]): Promise<Model[]> => [
    { id: BASE_MODEL, object: 'model', created: startedAt, owned_by: backbone, kind: 'base' },
    ...(await registry.list(caller)).map((a): Model => ({ id: a.id, object: 'model', created: a.created, owned_by: a.owner ?? 'shared', kind: a.kind })),
  ];
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/v1/models', {
    schema: { summary: 'Models the caller may use', tags: ['inference'], security: [{ bearer: [] }], response: { 200: modelListSchema, ...errorResponses } },
    handler: async (request) => ({ object: 'list' as const, data: await list(request.caller) }),
  });
  typed.get('/v1/models/*', {
    schema: { summary: 'One model', tags: ['inference'], security: [{ bearer: [] }], params: z.object({ '*': z.string() }), response: { 200: modelSchema, ...errorResponses } },
    handler: async (request) => {
      const id = request.params['*'];
      const model = (await list(request.caller)).find((m) => m.id === id);
      if (!model) throw modelNotFound(id);
      return model;
    },
  });
}

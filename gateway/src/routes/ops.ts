// Operations routes: /healthz for load balancers (no key), /metrics for Prometheus (operator key: its labels
// name tenants and their adapters).
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { GatewayMetrics } from '../metrics.js';
import { errorSchema } from '../openapi.js';
import type { WorkerPool } from '../workers/pool.js';

const healthSchema = z.object({
  status: z.enum(['ok', 'degraded']),
  workers: z.object({ healthy: z.number().int(), total: z.number().int() }),
});

export function healthRoute(app: FastifyInstance, pool: WorkerPool): void {
  app.withTypeProvider<ZodTypeProvider>().get('/healthz', {
    schema: { summary: 'Liveness and worker health (503 while no worker is healthy)', tags: ['operations'], response: { 200: healthSchema, 503: healthSchema } },
    handler: async (_request, reply) => {
      const healthy = pool.healthy().length;
      const body = { status: healthy > 0 ? ('ok' as const) : ('degraded' as const), workers: { healthy, total: pool.workers.length } };
      return reply.code(healthy > 0 ? 200 : 503).send(body);
    },
  });
}

export function metricsRoute(app: FastifyInstance, metrics: GatewayMetrics): void {
  app.withTypeProvider<ZodTypeProvider>().get('/metrics', {
    schema: {
      summary: 'Prometheus metrics (operator key)',
      tags: ['operations'],
      security: [{ bearer: [] }],
      response: {
        200: { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } },
        401: { description: 'Missing or unknown key', content: { 'application/json': { schema: errorSchema } } },
        403: { description: 'A tenant key', content: { 'application/json': { schema: errorSchema } } },
      },
    },
    handler: async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    },
  });
}

// Unauthenticated operations routes: /healthz for load balancers, /metrics for Prometheus.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { GatewayMetrics } from '../metrics.js';
import type { WorkerPool } from '../workers/pool.js';

const healthSchema = z.object({
  status: z.enum(['ok', 'degraded']),
  workers: z.object({ healthy: z.number().int(), total: z.number().int() }),
});

export function opsRoutes(app: FastifyInstance, pool: WorkerPool, metrics: GatewayMetrics): void {
  app.withTypeProvider<ZodTypeProvider>().get('/healthz', {
    schema: { summary: 'Liveness and worker health (503 while no worker is healthy)', tags: ['operations'], response: { 200: healthSchema, 503: healthSchema } },
    handler: async (_request, reply) => {
      const healthy = pool.healthy().length;
      const body = { status: healthy > 0 ? ('ok' as const) : ('degraded' as const), workers: { healthy, total: pool.workers.length } };
      return reply.code(healthy > 0 ? 200 : 503).send(body);
    },
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['operations'] } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });
}

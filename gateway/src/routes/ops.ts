// Operations routes: /healthz for load balancers, /livez and /readyz for orchestrators (no key), /metrics for
// Prometheus (operator key: its labels name tenants and their adapters).
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

const readySchema = z.object({
  status: z.enum(['ready', 'unready']),
  database: z.enum(['ok', 'unreachable']),
  workers: z.object({ healthy: z.number().int(), total: z.number().int() }),
});

/** How long /readyz waits for the database's answer. */
const DB_PING_TIMEOUT_MS = 2000;

async function databaseAnswers(ping: () => Promise<void>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), DB_PING_TIMEOUT_MS)));
  try {
    return await Promise.race([ping().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * /livez: the process answers (restart it when it does not). /readyz: it can serve, so send it traffic: the
 * database answers and at least one worker is healthy. A replica that lost its database is taken out of the
 * load balancer instead of failing every request.
 */
export function probeRoutes(app: FastifyInstance, pool: WorkerPool, ping: () => Promise<void>): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/livez', {
    schema: { summary: 'Liveness: the process answers', tags: ['operations'], response: { 200: z.object({ status: z.literal('alive') }) } },
    handler: async () => ({ status: 'alive' as const }),
  });
  typed.get('/readyz', {
    schema: { summary: 'Readiness: the database answers and a worker is healthy (else 503)', tags: ['operations'], response: { 200: readySchema, 503: readySchema } },
    handler: async (_request, reply) => {
      const healthy = pool.healthy().length;
      const database = (await databaseAnswers(ping)) ? ('ok' as const) : ('unreachable' as const);
      const ready = healthy > 0 && database === 'ok';
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unready', database, workers: { healthy, total: pool.workers.length } });
    },
  });
}

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

// Builds and starts one gateway: database, worker pool, registry, routes. startGateway() is the entry
// point for the CLI (src/main.ts), for tests and for other TypeScript code.
import { existsSync, readFileSync } from 'node:fs';
import fastifyMultipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { pino, type Logger } from 'pino';
import { Accounting } from './accounting.js';
import { Authenticator } from './auth.js';
import { type GatewayOptions, parseGatewayOptions } from './config.js';
import { type Store, openStore } from './db/store.js';
import { installErrorHandlers, routingError } from './error-handler.js';
import { GenerationService } from './generation.js';
import { RateLimiter } from './limits.js';
import { GatewayMetrics } from './metrics.js';
import { openApiRoute, registerOpenApi } from './openapi.js';
import { buildOverview } from './overview.js';
import { AdapterFileStore } from './registry/files.js';
import { AdapterRegistry } from './registry/registry.js';
import { adapterRoutes } from './routes/adapters.js';
import { adminRoutes } from './routes/admin.js';
import { chatRoutes } from './routes/openai/chat.js';
import { completionRoutes } from './routes/openai/completions.js';
import { ChoiceRunner } from './routes/openai/execute.js';
import { modelRoutes } from './routes/openai/models.js';
import { healthRoute, metricsRoute, probeRoutes } from './routes/ops.js';
import { seedSharedAdapters } from './seed.js';
import { TrafficWindow } from './traffic.js';
import { requireWellFormedStrings } from './well-formed.js';
import { loadEngineService } from './workers/proto.js';
import { WorkerPool } from './workers/pool.js';
import { Router } from './workers/router.js';

export interface Gateway {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  app: FastifyInstance;
  pool: WorkerPool;
  registry: AdapterRegistry;
  store: Store;
  logger: Logger;
  close(): Promise<void>;
}

const packageVersion = (): string =>
  (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** How long startGateway waits for a healthy worker when shared adapters must be registered. */
const SEED_WAIT_MS = 60_000;

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const config = parseGatewayOptions(options);
  const logger = pino({ level: config.logLevel, name: 'para-gateway' });

  const store = await openStore(config.db, {
    poolSize: config.dbPoolSize,
    onConnectionError: (err) => logger.warn({ err: err.message }, 'an idle database connection failed; the pool replaces it'),
  });
  const { tenants, keys, usage } = store;
  const pool = new WorkerPool(config.workers, loadEngineService(config.protoPath), {
    intervalMs: config.healthIntervalMs,
    timeoutMs: config.healthTimeoutMs,
    logger,
  });
  const router = new Router(pool, logger);
  const files = new AdapterFileStore(config.dataDir);
  await files.clearAbandoned(); // what a crashed upload left half-written, long enough ago
  const metrics = new GatewayMetrics(pool);
  const registry = new AdapterRegistry(store.adapters, files, router, (id) => metrics.forget({ model: id }));
  const limiter = new RateLimiter(store.limiterConnection);
  const traffic = new TrafficWindow();
  const runner = new ChoiceRunner(new GenerationService(pool, router, metrics, logger), new Accounting(usage, metrics, traffic));
  const auth = new Authenticator(config.operatorKey, keys);

  const app = Fastify({ loggerInstance: logger as FastifyBaseLogger, bodyLimit: config.maxBodyBytes, frameworkErrors: routingError });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandlers(app);
  requireWellFormedStrings(app);
  await registerOpenApi(app, packageVersion());
  await app.register(fastifyMultipart, { limits: { fileSize: config.maxAdapterBytes } });

  await app.register(async (scope) => {
    scope.addHook('onRequest', auth.requireKey);
    const openai = { registry, limiter, runner, maxChoices: config.maxChoices, contextLimit: () => pool.contextLimit() };
    modelRoutes(scope, registry, config.backbone, Math.floor(Date.now() / 1000));
    chatRoutes(scope, openai);
    completionRoutes(scope, openai);
    adapterRoutes(scope, { registry, tenants, maxAdapterBytes: config.maxAdapterBytes, maxConfigBytes: config.maxConfigBytes });
  });
  await app.register(async (scope) => {
    scope.addHook('onRequest', auth.requireOperator);
    adminRoutes(scope, {
      store,
      tenants, keys, usage, registry, limiter, metrics,
      defaultRpm: config.defaultRpm,
      defaultTpm: config.defaultTpm,
      overview: () => buildOverview({ backbone: config.backbone, tenants, usage, registry, pool, traffic, qualityResults: config.qualityResults }),
    });
  });
  await app.register(async (scope) => {
    // Its labels name tenants and their adapters: for the operator (and a Prometheus holding its key) only.
    scope.addHook('onRequest', auth.requireOperator);
    metricsRoute(scope, metrics);
  });
  healthRoute(app, pool);
  probeRoutes(app, pool, store.ping);
  openApiRoute(app);
  if (existsSync(config.dashboardDir)) {
    await app.register(fastifyStatic, { root: config.dashboardDir, prefix: '/dashboard/' });
    app.get('/dashboard', { schema: { hide: true } }, (_request, reply) => reply.redirect('/dashboard/'));
  }

  pool.start();
  const sweep = setInterval(() => {
    registry.sweep().catch((err: unknown) => logger.warn({ err }, 'adapter sweep failed; the next one tries again'));
  }, config.adapterSweepMs);
  sweep.unref();
  const close = async () => {
    clearInterval(sweep);
    await app.close();
    pool.close();
    await store.close();
  };
  try {
    await app.listen({ host: config.host, port: config.port });
    if (config.sharedAdapters.length > 0) {
      if (!(await pool.waitForHealthy(SEED_WAIT_MS))) throw new Error('no healthy engine worker to validate the shared adapters against');
      await seedSharedAdapters(registry, config.sharedAdapters, logger);
    }
  } catch (err) {
    await close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return { url: `http://${host}:${port}`, app, pool, registry, store, logger, close };
}

// The package's public surface: start a gateway, seed it, or talk to one with the admin client.
export { startGateway, type Gateway } from './app.js';
export { type GatewayOptions, type GatewayConfig, gatewayOptionsSchema } from './config.js';
export { parseCli, USAGE } from './argv.js';
export { seedSharedAdapters } from './seed.js';
export { parseSafetensors, SafetensorsError } from './registry/safetensors.js';
export * from './sdk/index.js';
export { isPostgresUrl } from './db/postgres.js';
export { openStore, type Store } from './db/store.js';
// For tools that talk to engine workers directly (para serve --demo reads a worker's Stats).
export { EngineClient } from './workers/client.js';
export { loadEngineService, type StatsResponse } from './workers/proto.js';
export { summarize, type Summary } from './percentiles.js';

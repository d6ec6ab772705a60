// The package's public surface: start a gateway, seed it, or talk to one with the admin client.
export { startGateway, type Gateway } from './app.js';
export { type GatewayOptions, type GatewayConfig, gatewayOptionsSchema } from './config.js';
export { parseCli, USAGE } from './argv.js';
export { seedSharedAdapters } from './seed.js';
export { parseSafetensors, SafetensorsError } from './registry/safetensors.js';
export * from './sdk/index.js';

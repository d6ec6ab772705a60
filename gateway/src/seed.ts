// Registers shared adapters from directories at start (`--shared-adapter NAME=DIR`). Idempotent: an
// adapter whose latest version already has the same weights is left as it is, so restarts add nothing.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { SharedAdapterSeed } from './config.js';
import { CONFIG_FILE, WEIGHTS_FILE, sha256 } from './registry/files.js';
import type { AdapterRegistry } from './registry/registry.js';

export async function seedSharedAdapters(registry: AdapterRegistry, seeds: SharedAdapterSeed[], logger: Logger): Promise<void> {
  for (const { name, dir } of seeds) {
    const [config, weights] = await Promise.all([readFile(join(dir, CONFIG_FILE)), readFile(join(dir, WEIGHTS_FILE))]);
    const latest = await registry.latestShared(name);
    if (latest?.sha256 === sha256(weights)) {
      logger.info({ adapter: name, version: latest.version }, 'shared adapter already registered');
      continue;
    }
    const adapter = await registry.upload('', name, { config, weights }, null);
    logger.info({ adapter: adapter.id, version: adapter.version }, 'shared adapter registered');
  }
}

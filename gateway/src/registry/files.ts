// Adapter files on disk: <dataDir>/adapters/<owner or _shared>/<name>/<version>/, written to a temporary
// folder first and renamed into place, so a crash never leaves half an adapter where the registry looks.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const CONFIG_FILE = 'adapter_config.json';
export const WEIGHTS_FILE = 'adapter_model.safetensors';

export interface AdapterFiles {
  config: Buffer;
  weights: Buffer;
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export class AdapterFileStore {
  constructor(private readonly root: string) {}

  /**
   * Removes the staging folder: at start nothing is being written, so whatever is there was left by a process
   * that stopped mid-upload (one gateway per data directory).
   */
  async clearStaging(): Promise<void> {
    await rm(join(this.root, 'staging'), { recursive: true, force: true });
  }

  dirFor(owner: string, name: string, version: number): string {
    return join(this.root, 'adapters', owner || '_shared', name, String(version));
  }

  async write(dir: string, files: AdapterFiles): Promise<void> {
    const staging = join(this.root, 'staging', randomBytes(8).toString('hex'));
    await mkdir(staging, { recursive: true });
    try {
      await writeFile(join(staging, CONFIG_FILE), files.config);
      await writeFile(join(staging, WEIGHTS_FILE), files.weights);
      await rm(dir, { recursive: true, force: true });
      await mkdir(join(dir, '..'), { recursive: true });
      await rename(staging, dir);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  async read(dir: string): Promise<AdapterFiles> {
    const [config, weights] = await Promise.all([readFile(join(dir, CONFIG_FILE)), readFile(join(dir, WEIGHTS_FILE))]);
    return { config, weights };
  }

  async remove(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }
}

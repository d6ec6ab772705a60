// Adapter files on a path every replica shares: content-addressed blobs, <dataDir>/blobs/<sha256>, each
// written to a temporary name in the same folder and renamed into place (atomic on one filesystem), so a blob
// either is complete under its name or does not exist. The database row naming a version is inserted only
// after both its blobs are in place, so a replica that did not take the upload still finds them. Versions
// stored before blobs keep their folders (<dataDir>/adapters/<owner or _shared>/<name>/<version>/).
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const CONFIG_FILE = 'adapter_config.json';
export const WEIGHTS_FILE = 'adapter_model.safetensors';

export interface AdapterFiles {
  config: Buffer;
  weights: Buffer;
}

/** Where one version's files are: two blobs, or a folder of the layout before blobs. */
export type FileRef = { configSha256: string; weightsSha256: string } | { dir: string };

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

const TEMP_PREFIX = '.tmp-';
/** A temporary blob older than this was left by a process that stopped mid-write (a write takes seconds). */
const STALE_TEMP_MS = 60 * 60 * 1000;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export class BlobIntegrityError extends Error {
  constructor(readonly sha256: string) {
    super(`blob ${sha256} does not hold what its name says`);
    this.name = 'BlobIntegrityError';
  }
}

export class AdapterFileStore {
  private readonly blobDir: string;

  constructor(private readonly root: string) {
    this.blobDir = join(root, 'blobs');
  }

  /**
   * Removes temporary blobs old enough to have been abandoned. Other replicas may be writing theirs right now,
   * so fresh ones are left alone. Also removes the staging folder of the layout before blobs.
   */
  async clearAbandoned(now = Date.now()): Promise<void> {
    await rm(join(this.root, 'staging'), { recursive: true, force: true });
    await mkdir(this.blobDir, { recursive: true });
    for (const name of await readdir(this.blobDir)) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const path = join(this.blobDir, name);
      const info = await stat(path).catch(() => undefined);
      if (info && now - info.mtimeMs > STALE_TEMP_MS) await rm(path, { force: true });
    }
  }

  blobPath(hex: string): string {
    if (!SHA256_HEX.test(hex)) throw new Error(`not a SHA-256: ${hex}`);
    return join(this.blobDir, hex);
  }

  /** Writes a blob under its SHA-256 (temporary name, then rename); returns the SHA-256. */
  async putBlob(data: Buffer): Promise<string> {
    const hex = sha256(data);
    const target = this.blobPath(hex);
    await mkdir(this.blobDir, { recursive: true });
    const temp = join(this.blobDir, `${TEMP_PREFIX}${hex.slice(0, 12)}-${randomBytes(6).toString('hex')}`);
    try {
      await writeFile(temp, data, { flag: 'wx' });
      // Same content, same name: a rename over a blob another replica just wrote replaces it with equal bytes.
      await rename(temp, target);
    } finally {
      await rm(temp, { force: true });
    }
    return hex;
  }

  async hasBlob(hex: string): Promise<boolean> {
    return (await stat(this.blobPath(hex)).catch(() => undefined))?.isFile() === true;
  }

  async readBlob(hex: string): Promise<Buffer> {
    const data = await readFile(this.blobPath(hex));
    if (sha256(data) !== hex) throw new BlobIntegrityError(hex);
    return data;
  }

  async removeBlob(hex: string): Promise<void> {
    await rm(this.blobPath(hex), { force: true });
  }

  async read(ref: FileRef): Promise<AdapterFiles> {
    if ('dir' in ref) {
      const [config, weights] = await Promise.all([readFile(join(ref.dir, CONFIG_FILE)), readFile(join(ref.dir, WEIGHTS_FILE))]);
      return { config, weights };
    }
    const [config, weights] = await Promise.all([this.readBlob(ref.configSha256), this.readBlob(ref.weightsSha256)]);
    return { config, weights };
  }

  /** A folder-stored version's files (blobs are removed by removeBlob, once no version uses them). */
  async removeDir(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }
}

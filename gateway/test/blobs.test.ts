// The adapter blob store on its own: content-addressed files written whole or not at all, checked when read,
// and what a crashed write left behind cleared once it is old enough not to be another replica's.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AdapterFileStore, BlobIntegrityError } from '../src/registry/files.js';

const root = mkdtempSync(join(tmpdir(), 'para-blobs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const hex = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('AdapterFileStore blobs', () => {
  it('stores a blob under its SHA-256 and reads it back; the same bytes twice at once are one blob', async () => {
    const store = new AdapterFileStore(join(root, 'a'));
    const data = Buffer.from('weights '.repeat(10_000));
    const names = await Promise.all([store.putBlob(data), store.putBlob(data), store.putBlob(data)]);
    expect(new Set(names)).toEqual(new Set([hex(data)]));
    expect(readdirSync(join(root, 'a', 'blobs'))).toEqual([hex(data)]); // no temporary file left
    expect((await store.readBlob(hex(data))).equals(data)).toBe(true);
    expect(await store.hasBlob(hex(data))).toBe(true);
    await store.removeBlob(hex(data));
    expect(await store.hasBlob(hex(data))).toBe(false);
  });

  it('refuses a blob whose bytes are not what its name says', async () => {
    const store = new AdapterFileStore(join(root, 'b'));
    const name = await store.putBlob(Buffer.from('good'));
    writeFileSync(store.blobPath(name), 'tampered');
    await expect(store.readBlob(name)).rejects.toBeInstanceOf(BlobIntegrityError);
  });

  it('names only SHA-256 blobs (no path can be smuggled in)', () => {
    const store = new AdapterFileStore(join(root, 'c'));
    expect(() => store.blobPath('../../etc/passwd')).toThrow();
    expect(() => store.blobPath('A'.repeat(64))).toThrow();
  });

  it('clears temporary files an hour old, and leaves fresh ones (another replica may be writing them)', async () => {
    const store = new AdapterFileStore(join(root, 'd'));
    const kept = await store.putBlob(Buffer.from('kept'));
    const blobs = join(root, 'd', 'blobs');
    writeFileSync(join(blobs, '.tmp-old'), 'half');
    writeFileSync(join(blobs, '.tmp-fresh'), 'half');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(join(blobs, '.tmp-old'), twoHoursAgo, twoHoursAgo);
    await store.clearAbandoned();
    expect(readdirSync(blobs).sort()).toEqual(['.tmp-fresh', kept].sort());
  });
});

// The adapter registry: model ids (`copa`, `acme/support`, `acme/support@2`, `base`), who may see which,
// validated uploads with versions, and deletion. A tenant sees its own adapters plus shared ones;
// another tenant's adapters are reported as unknown, never as forbidden, so their names do not leak.
import type { Caller } from '../auth.js';
import type { AdapterStore, AdapterVersion } from '../db/adapters.js';
import { nowSeconds } from '../db/time.js';
import { ApiError, badRequest, forbidden, modelNotFound, notFound, unavailable } from '../errors.js';
import { MODEL_PATTERN, NAME_PATTERN, NAME_RULE } from '../names.js';
import { isServiceError } from '../workers/client.js';
import { clientMessage, faultOf } from '../workers/faults.js';
import type { AdapterSource, Router } from '../workers/router.js';
import { AdapterConfigError, type AdapterKind, parseAdapterConfig } from './adapter-config.js';
import type { AdapterFiles, AdapterFileStore, FileRef } from './files.js';
import { SafetensorsError, parseSafetensors } from './safetensors.js';

export const BASE_MODEL = 'base';

export interface ResolvedModel extends AdapterSource {
  /** The id without version: `base`, `copa` or `acme/support`. */
  id: string;
  version: number | null;
}

export interface AdapterView {
  id: string;
  owner: string | null;
  version: number;
  sha256: string;
  bytes: number;
  parameters: number;
  created: number;
  versions: number[];
  /** 'para' or 'lora' (of the version shown). */
  kind: AdapterKind;
}

export const adapterId = (owner: string, name: string) => (owner ? `${owner}/${name}` : name);
export const workerNameOf = (row: AdapterVersion) => `${adapterId(row.owner, row.name)}@${row.version}`;

const SWEEP_TIMEOUT_MS = 10_000;

/** The owner of a worker name `workerNameOf` made (`acme/support@2`, `copa@1`); undefined for other names. */
function parseWorkerName(name: string): { owner: string } | undefined {
  const match = MODEL_PATTERN.exec(name);
  return match?.[3] ? { owner: match[1] ?? '' } : undefined;
}
const fileRefOf = (row: AdapterVersion): FileRef =>
  row.config_sha256 ? { configSha256: row.config_sha256, weightsSha256: row.sha256 } : { dir: row.dir };

export class AdapterRegistry {
  constructor(
    private readonly store: AdapterStore,
    private readonly files: AdapterFileStore,
    private readonly router: Router,
    /** Told the id of an adapter whose last version was deleted (the metrics drop its series). */
    private readonly onGone: (id: string) => Promise<void> = async () => undefined,
  ) {}

  /** What a `model` field names, if the caller may use it. */
  async resolve(caller: Caller, model: string): Promise<ResolvedModel> {
    if (model === BASE_MODEL) {
      return { id: BASE_MODEL, version: null, workerName: '', read: () => Promise.reject(new Error('no files')) };
    }
    const match = MODEL_PATTERN.exec(model);
    if (!match) throw modelNotFound(model);
    const [, owner = '', name = '', version] = match;
    if (owner && caller.kind === 'tenant' && caller.tenant.name !== owner) throw modelNotFound(model);
    const versions = await this.store.versions(owner, name);
    const row = version ? versions.find((v) => v.version === Number(version)) : versions.at(-1);
    if (!row) throw modelNotFound(model);
    return {
      id: adapterId(owner, name),
      version: row.version,
      workerName: workerNameOf(row),
      read: () => this.files.read(fileRefOf(row)),
    };
  }

  /** Owners whose adapters the caller sees ('' is shared); undefined means all. */
  private visibleOwners(caller: Caller): string[] | undefined {
    return caller.kind === 'tenant' ? [caller.tenant.name, ''] : undefined;
  }

  async list(caller: Caller): Promise<AdapterView[]> {
    const owners = this.visibleOwners(caller);
    const rows = owners ? await this.store.listFor(owners) : await this.store.listAll();
    const groups = new Map<string, AdapterVersion[]>();
    for (const row of rows) {
      const id = adapterId(row.owner, row.name);
      groups.set(id, [...(groups.get(id) ?? []), row]);
    }
    return [...groups.values()].map(view);
  }

  async get(caller: Caller, owner: string, name: string): Promise<AdapterView> {
    this.checkVisible(caller, owner, name);
    const rows = await this.store.versions(owner, name);
    if (rows.length === 0) throw notFound(`unknown adapter '${adapterId(owner, name)}'`);
    return view(rows);
  }

  private checkVisible(caller: Caller, owner: string, name: string): void {
    if (owner && caller.kind === 'tenant' && caller.tenant.name !== owner) {
      throw notFound(`unknown adapter '${adapterId(owner, name)}'`);
    }
  }

  /**
   * Validates (config, safetensors header, then shapes on a worker), stores, and returns the new version.
   * `tenantId`: the owning tenant's id (null for a shared adapter); a tenant deleted while its upload was being
   * checked gets nothing stored (404), so no later tenant of the same name can inherit it.
   */
  async upload(owner: string, name: string, files: AdapterFiles, tenantId: number | null): Promise<AdapterView> {
    if (!NAME_PATTERN.test(name)) throw badRequest(`invalid adapter name: ${NAME_RULE}`, 'name');
    if (owner && !NAME_PATTERN.test(owner)) {
      // A tenant created before the dot was dropped: its adapter ids could never be served.
      throw badRequest(`tenant '${owner}' has a name with a '.', which cannot own adapters (${NAME_RULE})`, 'tenant');
    }
    if (!owner && name === BASE_MODEL) throw badRequest(`'${BASE_MODEL}' names the bare backbone`, 'name');
    let parameters: number;
    let kind: AdapterKind;
    try {
      kind = parseAdapterConfig(files.config).kind;
      parameters = parseSafetensors(files.weights).parameters;
    } catch (err) {
      if (err instanceof AdapterConfigError) throw badRequest(err.message, 'config', 'invalid_adapter');
      if (err instanceof SafetensorsError) throw badRequest(err.message, 'weights', 'invalid_adapter');
      throw err;
    }
    // Version 0 is never stored (versions start at 1), so the check cannot collide with a loaded adapter.
    const info = await this.validateOnWorker(`${adapterId(owner, name)}@0`, files);
    // Blobs first, the row after: a row any replica can read always names complete files.
    const [configSha256, weightsSha256] = [await this.files.putBlob(files.config), await this.files.putBlob(files.weights)];
    const row = await this.store.insertNext(
      { owner, name, sha256: weightsSha256, config_sha256: configSha256, bytes: files.weights.length, parameters: Number(info?.parameters) || parameters, dir: '', created: nowSeconds(), kind },
      tenantId,
    );
    if (!row) {
      for (const blob of [weightsSha256, configSha256]) if (!(await this.store.blobInUse(blob))) await this.files.removeBlob(blob);
      throw notFound(`tenant '${owner}' was deleted during the upload`, 'not_found', 'tenant');
    }
    // A delete of the last other version with the same content, on any replica, may have found the blob unused
    // just before this row went in and removed it: put back what is missing. (That delete's check and removal
    // can still straddle this check; the version's next load onto a worker would then fail until uploaded
    // again. Deletes and uploads of identical bytes at the same moment are what it takes.)
    if (!(await this.files.hasBlob(configSha256))) await this.files.putBlob(files.config);
    if (!(await this.files.hasBlob(weightsSha256))) await this.files.putBlob(files.weights);
    return view(await this.store.versions(owner, name), row.version);
  }

  private async validateOnWorker(workerName: string, files: AdapterFiles) {
    try {
      return await this.router.validate(workerName, files);
    } catch (err) {
      if (err instanceof ApiError || !isServiceError(err)) throw err;
      const fault = faultOf(err);
      if (fault === 'request') throw badRequest(`the adapter does not fit the backbone: ${clientMessage(err)}`, 'weights', 'invalid_adapter');
      if (fault === 'busy') throw new ApiError(413, 'invalid_request_error', `the worker refused the adapter: ${clientMessage(err)}`, 'too_large');
      throw unavailable('could not validate the adapter on a worker; try again');
    }
  }

  /** Deletes one version or all; returns the id. */
  async delete(caller: Caller, owner: string, name: string, version?: number): Promise<string> {
    this.checkVisible(caller, owner, name);
    const id = adapterId(owner, name);
    if (!owner && caller.kind === 'tenant') throw forbidden(`shared adapter '${id}' can only be deleted by the operator`);
    const rows = await this.store.markDeleted(owner, name, version);
    if (rows.length === 0) throw notFound(`unknown adapter '${version ? `${id}@${version}` : id}'`);
    await this.dispose(rows);
    return id;
  }

  /** After versions were marked deleted (by delete(), or with their tenant): unloads them and frees their files. */
  async dispose(rows: AdapterVersion[]): Promise<void> {
    const adapters = new Map(rows.map((row) => [adapterId(row.owner, row.name), row]));
    for (const [id, row] of adapters) if ((await this.store.versions(row.owner, row.name)).length === 0) await this.onGone(id);
    for (const row of rows) {
      this.router.forget(workerNameOf(row));
      if (!row.config_sha256) {
        await this.files.removeDir(row.dir);
        continue;
      }
      // The same content may be another version's too (an adapter uploaded twice, or under two names).
      for (const blob of [row.sha256, row.config_sha256]) if (!(await this.store.blobInUse(blob))) await this.files.removeBlob(blob);
    }
  }

  /**
   * Unloads from every healthy worker the adapter versions that are no longer live: deleted on any replica, or
   * while a push or an unload was under way. Names the worker holds that are not versions of this registry
   * (no `@N`, loaded by the worker's own `--adapter`) are left alone. Returns how many it unloaded.
   */
  async sweep(): Promise<number> {
    let unloaded = 0;
    for (const worker of this.router.healthyWorkers()) {
      let held: string[];
      try {
        held = (await worker.client.listAdapters(SWEEP_TIMEOUT_MS)).map((a) => a.name);
      } catch {
        continue; // the health checks deal with a worker that does not answer
      }
      // Listed first, looked up after: whatever the worker held was pushed while live, so a version missing from
      // the live rows now was deleted.
      const versions = held.flatMap((name) => {
        const parsed = parseWorkerName(name);
        return parsed ? [{ name, owner: parsed.owner }] : [];
      });
      if (versions.length === 0) continue;
      const live = new Set((await this.store.listFor([...new Set(versions.map((v) => v.owner))])).map(workerNameOf));
      for (const { name } of versions) if (!live.has(name) && (await this.router.unload(worker, name))) unloaded++;
    }
    return unloaded;
  }

  /** Latest version of a shared adapter, for seeding at start. */
  async latestShared(name: string): Promise<AdapterVersion | undefined> {
    return (await this.store.versions('', name)).at(-1);
  }

  async all(): Promise<AdapterVersion[]> {
    return this.store.listAll();
  }
}

function view(rows: AdapterVersion[], version?: number): AdapterView {
  const row = (version ? rows.find((r) => r.version === version) : undefined) ?? rows.at(-1)!;
  return {
    id: adapterId(row.owner, row.name),
    owner: row.owner || null,
    version: row.version,
    sha256: row.sha256,
    bytes: row.bytes,
    parameters: row.parameters,
    created: row.created,
    versions: rows.map((r) => r.version),
    kind: row.kind === 'lora' ? 'lora' : 'para',
  };
}

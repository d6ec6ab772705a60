// Chooses the worker for a request and makes sure it holds the adapter first.
// Preference: a healthy worker that already holds the adapter and has a free slot (least loaded of those),
// else the least loaded healthy worker, which then gets the adapter pushed inline with LoadAdapter.
import type { Logger } from 'pino';
import { unavailable } from '../errors.js';
import type { AdapterFiles } from '../registry/files.js';
import { faultOf, workerDetails } from './faults.js';
import type { Worker, WorkerPool } from './pool.js';
import type { AdapterInfo } from './proto.js';

const LOAD_TIMEOUT_MS = 60_000;

export interface AdapterSource {
  /** Worker-side name, unique per version (`acme/support@2`); '' for the bare backbone. */
  workerName: string;
  read(): Promise<AdapterFiles>;
}

export class Router {
  private turn = 0;

  constructor(
    private readonly pool: WorkerPool,
    private readonly logger: Logger,
  ) {}

  pick(workerName: string, exclude: ReadonlySet<Worker> = new Set()): Worker {
    const candidates = this.pool.healthy().filter((w) => !exclude.has(w));
    if (candidates.length === 0) throw unavailable('no healthy engine worker is available');
    const holders = workerName ? candidates.filter((w) => w.adapters.has(workerName) && w.hasRoom) : [];
    return this.leastLoaded(holders.length > 0 ? holders : candidates);
  }

  healthyWorkers(): Worker[] {
    return this.pool.healthy();
  }

  private leastLoaded(workers: Worker[]): Worker {
    // Ties rotate, so equally idle workers share the traffic.
    const start = this.turn++ % workers.length;
    let best = workers[start]!;
    for (let k = 1; k < workers.length; k++) {
      const w = workers[(start + k) % workers.length]!;
      if (w.inflight / w.slots < best.inflight / best.slots) best = w;
    }
    return best;
  }

  /** Pushes the adapter to the worker unless it holds it; ALREADY_EXISTS counts as success. */
  async ensureAdapter(worker: Worker, source: AdapterSource): Promise<void> {
    const name = source.workerName;
    if (!name || worker.adapters.has(name)) return;
    let loading = worker.loading.get(name);
    if (!loading) {
      loading = this.load(worker, source).finally(() => worker.loading.delete(name));
      worker.loading.set(name, loading);
    }
    await loading;
  }

  private async load(worker: Worker, source: AdapterSource): Promise<void> {
    const files = await source.read();
    try {
      await worker.client.loadAdapter(
        { name: source.workerName, config_json: files.config, weights: files.weights },
        LOAD_TIMEOUT_MS,
      );
      this.logger.info({ worker: worker.address, adapter: source.workerName }, 'adapter pushed to worker');
    } catch (err) {
      if (faultOf(err) !== 'exists') throw err;
    }
    worker.adapters.add(source.workerName);
  }

  /**
   * Asks a healthy worker to check an adapter against the backbone without loading it; a worker that cannot
   * be reached is taken out and the next one asked.
   */
  async validate(workerName: string, files: AdapterFiles): Promise<AdapterInfo> {
    const tried = new Set<Worker>();
    for (;;) {
      const worker = this.pick('', tried);
      try {
        return await worker.client.loadAdapter(
          { name: workerName, config_json: files.config, weights: files.weights, validate_only: true },
          LOAD_TIMEOUT_MS,
        );
      } catch (err) {
        if (faultOf(err) !== 'transport') throw err;
        this.pool.markDown(worker, `LoadAdapter failed: ${workerDetails(err)}`);
        tried.add(worker);
      }
    }
  }

  /**
   * Unloads an adapter from one worker; true once the worker no longer holds it. An adapter still needed by
   * requests waiting on that worker is refused (false): a later sweep tries again.
   */
  async unload(worker: Worker, workerName: string): Promise<boolean> {
    try {
      await worker.client.unloadAdapter(workerName, 10_000);
    } catch (err) {
      if (faultOf(err) !== 'missing_adapter') {
        this.logger.debug({ worker: worker.address, adapter: workerName, err }, 'unload refused or failed; the next sweep tries again');
        return false;
      }
    }
    worker.adapters.delete(workerName);
    return true;
  }

  /** Best effort, at once: drops a deleted adapter version from every worker known to hold it (the sweep,
   *  `AdapterRegistry.sweep`, catches what this misses: a push still under way, a refused unload, another replica). */
  forget(workerName: string): void {
    for (const worker of this.pool.workers) if (worker.adapters.has(workerName)) void this.unload(worker, workerName);
  }
}

// The engine workers and what the gateway knows of each: health, slots, in-flight count, adapters held.
// A periodic Health check takes a dead worker out and a restarted one back in (re-learning its adapters
// with ListAdapters, since a restart forgets everything loaded over gRPC).
import type { Logger } from 'pino';
import type * as grpc from '@grpc/grpc-js';
import { EngineClient, grpcStatus, isServiceError } from './client.js';
import type { EngineClientConstructor, StatsResponse } from './proto.js';

/** Slots assumed for a worker that does not report them (the engine's default). */
const DEFAULT_SLOTS = 16;

/**
 * A refused or reset connection means the worker is gone: out at once. A Health call that merely times out
 * may be a worker busy with long streams (Python answers RPCs between engine steps), so it is taken out, with
 * its streams cancelled, only after this many slow checks in a row.
 */
const SLOW_CHECKS_BEFORE_DOWN = 3;

export class Worker {
  healthy = false;
  inflight = 0;
  slots = DEFAULT_SLOTS;
  maxContext = 0;
  model = '';
  stats: StatsResponse | null = null;
  lastError = '';
  /** Health checks in a row that failed without a broken connection. */
  slowChecks = 0;
  /** When a Generate stream on this worker last delivered a chunk (ms since the epoch). */
  lastProgress = 0;
  /** Worker-side adapter names the worker holds, as far as the gateway knows. */
  readonly adapters = new Set<string>();
  /** Loads in progress, so concurrent requests for one adapter push it once. */
  readonly loading = new Map<string, Promise<void>>();
  /** Generate calls running on this worker, cancelled together if it is taken out. */
  readonly calls = new Set<grpc.ClientReadableStream<unknown>>();

  constructor(readonly client: EngineClient) {}

  get address(): string {
    return this.client.address;
  }

  get hasRoom(): boolean {
    return this.inflight < this.slots;
  }
}

export interface PoolOptions {
  intervalMs: number;
  timeoutMs: number;
  logger: Logger;
}

export class WorkerPool {
  readonly workers: Worker[];
  private timer: NodeJS.Timeout | undefined;
  private checking = new Map<Worker, Promise<void>>();
  private readonly healthyWaiters = new Set<() => void>();

  constructor(
    addresses: string[],
    Engine: EngineClientConstructor,
    private readonly options: PoolOptions,
  ) {
    this.workers = [...new Set(addresses)].map((a) => new Worker(new EngineClient(a, Engine)));
  }

  start(): void {
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), this.options.intervalMs);
    this.timer.unref();
  }

  healthy(): Worker[] {
    return this.workers.filter((w) => w.healthy);
  }

  /** The context every healthy worker holds (the smallest), so a request checked against it fits any of them. */
  contextLimit(): number | undefined {
    const contexts = this.healthy().map((w) => w.maxContext).filter((c) => c > 0);
    return contexts.length > 0 ? Math.min(...contexts) : undefined;
  }

  checkAll(): Promise<void> {
    return Promise.all(this.workers.map((w) => this.check(w))).then(() => undefined);
  }

  /** One health check of a worker; concurrent callers share the check in progress. */
  check(worker: Worker): Promise<void> {
    let running = this.checking.get(worker);
    if (!running) {
      running = this.probe(worker).finally(() => this.checking.delete(worker));
      this.checking.set(worker, running);
    }
    return running;
  }

  private async probe(worker: Worker): Promise<void> {
    const { timeoutMs, logger } = this.options;
    try {
      const health = await worker.client.health(timeoutMs);
      if (!health.serving) throw new Error('worker reports it is not serving');
      if (!worker.healthy) {
        // New or restarted: learn what it holds before routing to it.
        const adapters = await worker.client.listAdapters(timeoutMs);
        worker.adapters.clear();
        for (const a of adapters) worker.adapters.add(a.name);
        worker.model = health.model;
        worker.maxContext = health.max_context;
        worker.slots = health.slots || DEFAULT_SLOTS;
        worker.healthy = true;
        worker.lastError = '';
        logger.info({ worker: worker.address, model: health.model, adapters: adapters.length }, 'worker up');
        for (const wake of this.healthyWaiters) wake();
      }
      worker.stats = await worker.client.stats(timeoutMs);
      worker.slowChecks = 0;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const gone = !isServiceError(err) || err.code === grpcStatus.UNAVAILABLE;
      // A worker whose streams are still delivering tokens is busy, not dead: a slow answer does not count.
      const streaming = worker.inflight > 0 && Date.now() - worker.lastProgress < timeoutMs;
      if (!gone && worker.healthy && streaming) {
        logger.warn({ worker: worker.address, reason }, 'health check slow while the worker streams; kept');
        return;
      }
      if (gone || !worker.healthy || ++worker.slowChecks >= SLOW_CHECKS_BEFORE_DOWN) this.markDown(worker, reason);
      else logger.warn({ worker: worker.address, reason, slowChecks: worker.slowChecks }, 'worker slow to answer its health check');
    }
  }

  /** Takes a worker out: its running streams are cancelled (their clients get an error), routing skips it. */
  markDown(worker: Worker, reason: string): void {
    worker.lastError = reason;
    if (!worker.healthy) return;
    worker.healthy = false;
    worker.slowChecks = 0;
    worker.stats = null;
    worker.adapters.clear();
    this.options.logger.warn({ worker: worker.address, reason }, 'worker down');
    for (const call of worker.calls) call.cancel();
    // Probe again soon: a connection blip should not keep a worker out for a whole interval.
    setTimeout(() => void this.check(worker), Math.min(250, this.options.intervalMs)).unref();
  }

  /** Resolves once at least one worker is healthy, or after timeoutMs (false). */
  waitForHealthy(timeoutMs: number): Promise<boolean> {
    if (this.healthy().length > 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.healthyWaiters.delete(wake);
        resolve(ok);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(this.healthy().length > 0), timeoutMs);
      this.healthyWaiters.add(wake);
    });
  }

  close(): void {
    clearInterval(this.timer);
    for (const w of this.workers) {
      for (const call of w.calls) call.cancel();
      w.client.close();
    }
  }
}

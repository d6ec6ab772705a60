// One engine request on one worker, from routing to its last chunk. Failures before the first chunk are
// retried on another worker (a dead worker, or one that lost the adapter in a restart); after the first
// chunk a failure ends the request with a retryable 503, since tokens already went to the client.
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ApiError, badRequest, unavailable } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import { grpcStatus, isServiceError } from './workers/client.js';
import type { Worker, WorkerPool } from './workers/pool.js';
import type { ChatMessage, GenerateChunk, SamplingParams } from './workers/proto.js';
import type { AdapterSource, Router } from './workers/router.js';

export type EngineInput = { prompt: string } | { chat: { messages: ChatMessage[] } } | { prompt_ids: { ids: number[] } };

const MAX_ATTEMPTS = 3;

/** Status codes that mean the worker, not the request, is at fault. */
const WORKER_FAULTS = new Set<number>([grpcStatus.UNAVAILABLE, grpcStatus.CANCELLED, grpcStatus.DEADLINE_EXCEEDED, grpcStatus.INTERNAL, grpcStatus.UNKNOWN]);

export class Generation {
  private cancelledByClient = false;
  private released = false;
  private completed = false;
  /** Tokens received so far (what usage falls back to if the stream fails). */
  completionTokens = 0;

  constructor(
    readonly worker: Worker,
    private readonly call: grpc.ClientReadableStream<GenerateChunk>,
    private readonly iterator: AsyncIterator<GenerateChunk>,
    private readonly first: GenerateChunk,
    private readonly pool: WorkerPool,
    private readonly release: () => void,
  ) {}

  /** The chunks, the first included; throws ApiError (503) if the worker fails mid-stream. */
  async *chunks(): AsyncGenerator<GenerateChunk> {
    try {
      this.completionTokens += this.first.token_ids.length;
      this.completed = Boolean(this.first.finish_reason);
      yield this.first;
      if (this.completed) return;
      for (;;) {
        let next: IteratorResult<GenerateChunk>;
        try {
          next = await this.iterator.next();
        } catch (err) {
          if (this.cancelledByClient) return;
          throw this.midStreamError(err);
        }
        if (next.done) {
          if (this.cancelledByClient) return;
          throw unavailable(`engine worker ${this.worker.address} ended the stream without finishing`);
        }
        this.completionTokens += next.value.token_ids.length;
        this.completed = Boolean(next.value.finish_reason);
        this.worker.lastProgress = Date.now();
        yield next.value;
        if (this.completed) return;
      }
    } finally {
      // A consumer that stops reading early (or a failure) must not leave the request running on the worker.
      if (!this.completed && !this.cancelledByClient) this.call.cancel();
      this.finish();
    }
  }

  private midStreamError(err: unknown): ApiError {
    const detail = isServiceError(err) ? err.details : String(err);
    if (!isServiceError(err) || WORKER_FAULTS.has(err.code)) {
      this.pool.markDown(this.worker, `stream failed: ${detail}`);
      return unavailable(`engine worker ${this.worker.address} failed during the request: ${detail}`);
    }
    return new ApiError(500, 'server_error', `engine error: ${detail}`, 'engine_error');
  }

  /** Stops the engine request (the client went away, or a sibling choice failed). */
  cancel(): void {
    if (this.released) return;
    this.cancelledByClient = true;
    this.call.cancel();
    this.finish();
  }

  private finish(): void {
    if (this.released) return;
    this.released = true;
    this.release();
  }
}

export class GenerationService {
  constructor(
    private readonly pool: WorkerPool,
    private readonly router: Router,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
  ) {}

  /** Routes the request and waits for its first chunk, so request errors still become HTTP statuses. */
  async start(model: AdapterSource, input: EngineInput, sampling: SamplingParams): Promise<Generation> {
    const tried = new Set<Worker>();
    let lastError: unknown;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const worker = this.router.pick(model.workerName, tried);
      try {
        await this.router.ensureAdapter(worker, model);
      } catch (err) {
        lastError = err;
        if (isServiceError(err) && WORKER_FAULTS.has(err.code)) {
          this.pool.markDown(worker, `LoadAdapter failed: ${err.details}`);
          tried.add(worker);
          continue;
        }
        const detail = isServiceError(err) ? err.details : String(err);
        throw new ApiError(500, 'server_error', `could not load adapter '${model.workerName}' on a worker: ${detail}`, 'adapter_load_failed');
      }
      const call = worker.client.generate({ request_id: randomUUID(), adapter: model.workerName, ...input, sampling });
      call.on('error', () => {}); // errors surface through the iterator; this keeps an unread one from crashing
      worker.calls.add(call);
      worker.inflight++;
      this.metrics.inflight.inc();
      const release = () => {
        worker.calls.delete(call);
        worker.inflight--;
        this.metrics.inflight.dec();
      };
      const iterator = call[Symbol.asyncIterator]() as AsyncIterator<GenerateChunk>;
      try {
        const first = await iterator.next();
        if (first.done) throw unavailable(`engine worker ${worker.address} ended the stream without output`);
        worker.lastProgress = Date.now();
        return new Generation(worker, call, iterator, first.value, this.pool, release);
      } catch (err) {
        release();
        lastError = err;
        if (err instanceof ApiError) throw err;
        if (!isServiceError(err)) throw err;
        if (err.code === grpcStatus.INVALID_ARGUMENT) throw badRequest(err.details);
        if (err.code === grpcStatus.NOT_FOUND) {
          // The worker lost the adapter (restarted between health checks): push it again, once per worker.
          worker.adapters.delete(model.workerName);
          if (attempt > 0) tried.add(worker);
          continue;
        }
        if (WORKER_FAULTS.has(err.code)) {
          this.pool.markDown(worker, `Generate failed: ${err.details}`);
          tried.add(worker);
          continue;
        }
        if (err.code === grpcStatus.RESOURCE_EXHAUSTED) {
          tried.add(worker); // busy, not dead: try another one
          continue;
        }
        throw new ApiError(500, 'server_error', `engine error: ${err.details}`, 'engine_error');
      }
    }
    this.logger.warn({ err: lastError, adapter: model.workerName }, 'no worker could serve the request');
    const detail = isServiceError(lastError) ? `: ${lastError.details}` : '';
    throw unavailable(`no engine worker could serve the request${detail}`);
  }
}

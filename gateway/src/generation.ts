// One engine request on one worker, from routing to its last chunk. A worker-side failure before the first
// chunk is retried on another worker (a dead worker, one that lost the adapter in a restart, one that is
// full); an error the request caused is its own 400 and is never retried elsewhere. After the first chunk a
// failure ends the request, since tokens already went to the client. Only a broken connection takes a worker
// out (faults.ts): one request's failure never cancels the other requests on its worker.
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ApiError, badRequest, unavailable } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import { grpcStatus, isServiceError } from './workers/client.js';
import { clientMessage, faultOf, paramOf, workerDetails } from './workers/faults.js';
import type { Worker, WorkerPool } from './workers/pool.js';
import type { ChatMessage, GenerateChunk, SamplingParams } from './workers/proto.js';
import type { AdapterSource, Router } from './workers/router.js';

export type EngineInput = { prompt: string } | { chat: { messages: ChatMessage[] } } | { prompt_ids: { ids: number[] } };

const MAX_ATTEMPTS = 3;
const CANCEL_TIMEOUT_MS = 2000;

/** The request's own failure after it started (e.g. its adapter produced non-finite logits). */
const failedMidway = (err: unknown) => new ApiError(400, 'invalid_request_error', clientMessage(err), 'generation_failed', 'model');

export class Generation {
  private cancelledByClient = false;
  private released = false;
  private completed = false;
  /** Tokens received so far: the completion tokens billed when no final usage arrives (cancelled, failed). */
  completionTokens = 0;
  /** Prompt tokens, once a chunk has reported them (the first one does). */
  promptTokens = 0;
  /** Settles once a cancelled request's usage is known (the worker's answer to Cancel, or what was counted). */
  private settled: Promise<void> = Promise.resolve();

  constructor(
    readonly worker: Worker,
    private readonly requestId: string,
    private readonly call: grpc.ClientReadableStream<GenerateChunk>,
    private readonly iterator: AsyncIterator<GenerateChunk>,
    private readonly first: GenerateChunk,
    private readonly pool: WorkerPool,
    private readonly release: () => void,
  ) {
    this.count(first); // billed even if the choice is cancelled before anyone reads it
  }

  /** The chunks, the first included; throws ApiError (503) if the worker fails mid-stream. */
  async *chunks(): AsyncGenerator<GenerateChunk> {
    try {
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
        this.count(next.value);
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

  private count(chunk: GenerateChunk): void {
    this.completionTokens += chunk.token_ids.length;
    if (chunk.usage?.prompt_tokens) this.promptTokens = chunk.usage.prompt_tokens;
    this.completed = Boolean(chunk.finish_reason);
    // The last chunk's usage is the engine's own count; it wins over the gateway's.
    if (this.completed && chunk.usage) this.completionTokens = chunk.usage.completion_tokens;
  }

  private midStreamError(err: unknown): ApiError {
    const fault = faultOf(err);
    if (fault === 'request') return failedMidway(err);
    if (fault === 'transport') this.pool.markDown(this.worker, `stream failed: ${workerDetails(err)}`);
    return unavailable(`engine worker ${this.worker.address} failed during the request`);
  }

  /** Stops the engine request (the client went away, or a sibling choice failed). The worker is asked to stop
   *  it first and answers its exact usage, tokens it generated after the last chunk read here included; the
   *  stream is closed once it has answered (or could not). */
  cancel(): void {
    if (this.released) return;
    this.cancelledByClient = true;
    if (!this.completed) {
      this.settled = this.worker.client.cancel(this.requestId, CANCEL_TIMEOUT_MS).then(
        (usage) => {
          this.promptTokens = usage.prompt_tokens || this.promptTokens;
          this.completionTokens = Math.max(this.completionTokens, usage.completion_tokens);
        },
        () => {}, // no answer: the tokens counted here are what is billed
      ).finally(() => this.call.cancel());
    } else {
      this.call.cancel();
    }
    this.finish();
  }

  /** What the request used: the engine's final figures when they came (the last chunk, or its answer to
   *  Cancel), else the prompt tokens the first chunk reported and the token ids of every chunk received. */
  async usage(): Promise<{ promptTokens: number; completionTokens: number }> {
    await this.settled;
    return { promptTokens: this.promptTokens, completionTokens: this.completionTokens };
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
        if (!isServiceError(err)) throw err; // reading the adapter's files here failed: the gateway's own fault
        lastError = err;
        const fault = faultOf(err);
        // The stored adapter is refused by the worker (its files, not the worker, are at fault).
        if (fault === 'request') throw badRequest(`adapter '${model.workerName}' cannot be loaded: ${clientMessage(err)}`, 'model', 'invalid_adapter');
        this.workerFailed(worker, err, 'LoadAdapter', tried);
        continue;
      }
      const requestId = randomUUID();
      const call = worker.client.generate({ request_id: requestId, adapter: model.workerName, ...input, sampling });
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
        return new Generation(worker, requestId, call, iterator, first.value, this.pool, release);
      } catch (err) {
        release();
        lastError = err;
        if (err instanceof ApiError) throw err;
        const fault = faultOf(err);
        if (fault === 'request') {
          // Failed by its own fault once running (say, its adapter's logits), or refused as malformed.
          if (isServiceError(err) && err.code === grpcStatus.FAILED_PRECONDITION) throw failedMidway(err);
          throw badRequest(clientMessage(err), paramOf(err), 'invalid_request');
        }
        if (fault === 'missing_adapter') {
          // The worker lost the adapter (restarted between health checks): push it again, once per worker.
          worker.adapters.delete(model.workerName);
          if (attempt > 0) tried.add(worker);
          continue;
        }
        this.workerFailed(worker, err, 'Generate', tried);
      }
    }
    this.logger.warn({ err: lastError, adapter: model.workerName }, 'no worker could serve the request');
    throw unavailable('no engine worker could serve the request');
  }

  /** A worker-side failure before the first token: that worker is skipped, and taken out only if unreachable. */
  private workerFailed(worker: Worker, err: unknown, rpc: string, tried: Set<Worker>): void {
    tried.add(worker);
    if (faultOf(err) === 'transport') this.pool.markDown(worker, `${rpc} failed: ${workerDetails(err)}`);
    else this.logger.warn({ worker: worker.address, rpc, details: workerDetails(err) }, 'worker failed a request; trying another');
  }
}

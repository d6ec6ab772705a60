// One engine worker's gRPC client: promise-returning unary calls with deadlines, and Generate as a stream.
import * as grpc from '@grpc/grpc-js';
import type {
  AdapterInfo,
  EngineClientConstructor,
  EngineServiceClient,
  GenerateChunk,
  GenerateRequest,
  HealthResponse,
  LoadAdapterRequest,
  StatsResponse,
} from './proto.js';

/** The worker accepts messages up to 64 MiB (inline adapter uploads); allow the same both ways. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// Short reconnect backoff: a restarted worker should be noticed within a health interval or two, not after
// grpc's default backoff of up to two minutes.
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.min_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.enable_retries': 0,
};

export class EngineClient {
  private readonly client: EngineServiceClient;

  constructor(
    readonly address: string,
    Engine: EngineClientConstructor,
  ) {
    this.client = new Engine(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  private unary<Req, Res>(method: string, request: Req, timeoutMs: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      const fn = this.client[method] as (
        req: Req,
        meta: grpc.Metadata,
        options: grpc.CallOptions,
        callback: (err: grpc.ServiceError | null, res: Res) => void,
      ) => void;
      fn.call(this.client, request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  health(timeoutMs: number): Promise<HealthResponse> {
    return this.unary('Health', {}, timeoutMs);
  }

  stats(timeoutMs: number): Promise<StatsResponse> {
    return this.unary('Stats', {}, timeoutMs);
  }

  async listAdapters(timeoutMs: number): Promise<AdapterInfo[]> {
    const res = await this.unary<object, { adapters: AdapterInfo[] }>('ListAdapters', {}, timeoutMs);
    return res.adapters;
  }

  loadAdapter(request: LoadAdapterRequest, timeoutMs: number): Promise<AdapterInfo> {
    return this.unary('LoadAdapter', request, timeoutMs);
  }

  unloadAdapter(name: string, timeoutMs: number): Promise<void> {
    return this.unary('UnloadAdapter', { name }, timeoutMs);
  }

  /** Stops a running generation and answers what it used; it generates nothing more after the answer. */
  cancel(requestId: string, timeoutMs: number): Promise<{ prompt_tokens: number; completion_tokens: number }> {
    return this.unary('Cancel', { request_id: requestId }, timeoutMs);
  }

  /** Starts a generation; iterate the returned stream for chunks, cancel() it to free the worker's slot. */
  generate(request: GenerateRequest): grpc.ClientReadableStream<GenerateChunk> {
    return this.client.Generate(request);
  }

  close(): void {
    this.client.close();
  }
}

export const isServiceError = (err: unknown): err is grpc.ServiceError =>
  typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'number';

export const grpcStatus = grpc.status;

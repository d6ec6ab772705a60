// The engine contract, loaded at run time from proto/engine.proto (never copied), plus TypeScript shapes of
// the messages the gateway uses. Loader options: field names as written, 64-bit numbers as JS numbers,
// defaults filled in, and the `input` oneof named.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface SamplingParams {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  stop?: string[];
  ignore_eos?: boolean;
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  /** token id -> bias */
  logit_bias?: Record<number, number>;
  top_logprobs?: number;
  response_format?: { type: 'json_object' | 'json_schema'; json_schema: string };
}

export interface ChatMessage {
  role: string;
  content: string;
}

export interface GenerateRequest {
  request_id: string;
  adapter: string;
  prompt?: string;
  chat?: { messages: ChatMessage[] };
  prompt_ids?: { ids: number[] };
  sampling: SamplingParams;
}

export interface GenerateChunk {
  request_id: string;
  token_ids: number[];
  text: string;
  logprobs: number[];
  finish_reason: string;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  /** One per token_ids entry when sampling.top_logprobs > 0: the most likely alternatives, best first. */
  top_logprobs: { ids: number[]; logprobs: number[]; texts: string[] }[];
}

export interface LoadAdapterRequest {
  name: string;
  path?: string;
  config_json?: Buffer;
  weights?: Buffer;
  validate_only?: boolean;
}

export interface AdapterInfo {
  name: string;
  parameters: number;
  base_model: string;
  kind: string;
}

export interface HealthResponse {
  serving: boolean;
  model: string;
  api_version: number;
  max_context: number;
  slots?: number;
}

export interface StatsResponse {
  running: number;
  waiting: number;
  free_slots: number;
  requests_finished: number;
  tokens_generated: number;
  adapters_loaded: number;
  peak_batch_rows: number;
  peak_batch_adapters: number;
  /** The decoding step that mixed the most kinds of row (bare, PARA, LoRA): how many kinds, and its rows. */
  peak_kinds: number;
  peak_kinds_rows: number;
}

export type EngineServiceClient = grpc.Client & {
  Generate(request: GenerateRequest, metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<GenerateChunk>;
  [rpc: string]: unknown;
};

export type EngineClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => EngineServiceClient;

export function loadEngineService(protoPath: string): EngineClientConstructor {
  const definition = protoLoader.loadSync(protoPath, { keepCase: true, longs: Number, defaults: true, oneofs: true });
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    para: { engine: { v1: { Engine: EngineClientConstructor } } };
  };
  return root.para.engine.v1.Engine;
}

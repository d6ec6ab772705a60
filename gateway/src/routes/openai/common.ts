// What both generation routes do before running: resolve the model for the caller, turn the body into
// engine requests (one per prompt and sample) with every number checked against what the workers accept,
// and admit the request against the tenant's rate limits with its full cost.
import { randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { OPERATOR_ID } from '../../db/usage.js';
import { badRequest } from '../../errors.js';
import type { EngineInput } from '../../generation.js';
import { NO_ADMISSION, type RateLimiter } from '../../limits.js';
import type { AdapterRegistry, ResolvedModel } from '../../registry/registry.js';
import type { SamplingParams } from '../../workers/proto.js';
import type { ChoiceRunner, ChoiceSpec, RequestContext } from './execute.js';

export interface OpenAIRouteDeps {
  registry: AdapterRegistry;
  limiter: RateLimiter;
  runner: ChoiceRunner;
  maxChoices: number;
  /** Tokens per sequence (prompt included) every healthy worker holds; undefined while none is known. */
  contextLimit(): number | undefined;
}

interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  top_k?: number | null;
  ignore_eos?: boolean | null;
  logit_bias?: Record<string, number> | null;
  response_format?: { type: 'text' } | { type: 'json_object' } | { type: 'json_schema'; json_schema: { schema?: Record<string, unknown> } } | null;
  user?: string;
  safety_identifier?: string;
}

/** What the engine is asked besides the sampling fields: alternatives per token. */
export interface ChoiceExtras {
  topLogprobs: number;
}

export interface Prepared {
  ctx: RequestContext;
  resolved: ResolvedModel;
  specs: ChoiceSpec[];
}

export async function prepare(
  deps: OpenAIRouteDeps,
  request: FastifyRequest,
  model: string,
  inputs: EngineInput[],
  body: SamplingFields,
  maxTokens: { value: number | null | undefined; param: string },
  extras: ChoiceExtras = { topLogprobs: 0 },
): Promise<Prepared> {
  const startedAt = performance.now();
  const resolved = await deps.registry.resolve(request.caller, model);
  const context = deps.contextLimit();
  checkRanges(inputs, maxTokens, context);
  const specs = choiceSpecs(deps, inputs, body, maxTokens.value, extras);
  const caller = request.caller;
  // A choice can never generate more than max_tokens, and its prompt is counted once however many choices it has;
  // without max_tokens a choice can never use more than the context holds, prompt included.
  const tokens = maxTokens.value != null ? maxTokens.value * specs.length + inputs.reduce((sum, input) => sum + promptEstimate(input), 0) : (context ?? 0) * specs.length;
  const choicesParam = (body.n ?? 1) > 1 ? 'n' : 'prompt';
  const admission = caller.kind === 'tenant' ? await deps.limiter.admit(caller.tenant.id, caller.tenant, { requests: specs.length, tokens, choicesParam }) : NO_ADMISSION;
  const tenant = caller.kind === 'tenant' ? caller.tenant : { id: OPERATOR_ID, name: '' };
  const endUser = body.user || body.safety_identifier || undefined;
  return { ctx: { tenant: tenant.name, tenantId: tenant.id, modelId: resolved.id, endUser, startedAt, admission }, resolved, specs };
}

/**
 * The tokens a prompt is reserved for at admission, before the worker has tokenised it: token ids exactly; text
 * at a quarter of its UTF-8 bytes (OpenAI's rule of thumb for its own estimate), at least one. When the request
 * ends, the window is settled to the tokens it really used.
 */
export function promptEstimate(input: EngineInput): number {
  if ('prompt_ids' in input) return input.prompt_ids.ids.length;
  const text = 'prompt' in input ? input.prompt : input.chat.messages.map((m) => m.content).join('\n');
  return Math.max(1, Math.ceil(Buffer.byteLength(text, 'utf8') / 4));
}

/** Numbers the workers' uint32 fields would silently wrap, or that no worker could honour, are 400s here. */
function checkRanges(inputs: EngineInput[], maxTokens: { value: number | null | undefined; param: string }, context: number | undefined): void {
  if (context === undefined) return; // no worker known: the request gets 503 when it is routed
  if (maxTokens.value != null && maxTokens.value >= context) {
    throw badRequest(`${maxTokens.param} must be below the model's context of ${context} tokens (the prompt needs room too)`, maxTokens.param, 'invalid_value');
  }
  inputs.forEach((input, i) => {
    if ('prompt_ids' in input && input.prompt_ids.ids.length >= context) {
      throw badRequest(`prompt ${i} has ${input.prompt_ids.ids.length} tokens; the model's context is ${context}`, 'prompt', 'context_length_exceeded');
    }
  });
}

/** The model name replies carry: the version that served, as OpenAI names the snapshot behind an alias. */
export const servedModel = (resolved: ResolvedModel) => (resolved.version ? `${resolved.id}@${resolved.version}` : resolved.id);

/** One spec per (prompt, sample); sample j of a seeded request uses seed + j so the choices differ. */
export function choiceSpecs(
  deps: Pick<OpenAIRouteDeps, 'maxChoices'>,
  inputs: EngineInput[],
  body: SamplingFields,
  maxTokens: number | null | undefined,
  extras: ChoiceExtras = { topLogprobs: 0 },
): ChoiceSpec[] {
  const n = body.n ?? 1;
  if (n > deps.maxChoices) throw badRequest(`n must be at most ${deps.maxChoices}`, 'n');
  if (inputs.length * n > deps.maxChoices * 8) {
    throw badRequest(`too many choices: ${inputs.length} prompts × n=${n}, at most ${deps.maxChoices * 8}`, n > 1 ? 'n' : 'prompt');
  }
  const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const logitBias = Object.fromEntries(Object.entries(body.logit_bias ?? {}).map(([id, bias]) => [Number(id), bias]));
  const format = responseFormatOf(body.response_format);
  const specs: ChoiceSpec[] = [];
  inputs.forEach((input, promptIndex) => {
    for (let j = 0; j < n; j++) {
      const sampling: SamplingParams = {
        max_tokens: maxTokens ?? 0,
        temperature: body.temperature ?? 1,
        top_p: body.top_p ?? 1,
        top_k: Math.max(0, body.top_k ?? 0),
        stop: stop.filter((s) => s.length > 0),
        ignore_eos: body.ignore_eos ?? false,
        presence_penalty: body.presence_penalty ?? 0,
        frequency_penalty: body.frequency_penalty ?? 0,
        repetition_penalty: body.repetition_penalty ?? 1,
        logit_bias: logitBias,
        top_logprobs: extras.topLogprobs,
      };
      if (format) sampling.response_format = format;
      // seed + j, wrapped below 2^53 (a sum above MAX_SAFE_INTEGER would round, and two choices could share a seed)
      if (body.seed != null) sampling.seed = body.seed <= Number.MAX_SAFE_INTEGER - j ? body.seed + j : body.seed - (Number.MAX_SAFE_INTEGER + 1 - j);
      specs.push({ index: promptIndex * n + j, promptIndex, input, sampling });
    }
  });
  return specs;
}

export const completionId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The engine's response format: none for text; a JSON schema is sent as its text (the worker compiles it). */
function responseFormatOf(format: SamplingFields['response_format']): SamplingParams['response_format'] {
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json_object', json_schema: '' };
  // OpenAI allows a json_schema without a schema: any JSON object then.
  if (!format.json_schema.schema) return { type: 'json_object', json_schema: '' };
  return { type: 'json_schema', json_schema: JSON.stringify(format.json_schema.schema) };
}

// Request and response bodies of the OpenAI-compatible routes. Every field OpenAI documents is either
// honoured or refused with a 400 that names it (`param`); a field OpenAI does not document is refused as
// OpenAI refuses it ("Unrecognized request argument supplied"), except the few vLLM extensions listed
// below (top_k, repetition_penalty, ignore_eos). docs/gateway-api.md lists them all.
import { z } from 'zod';

/** The widest the engine's uint32 fields are trusted to carry: larger numbers are refused, never wrapped. */
export const MAX_INT32 = 2 ** 31 - 1;
/** The most alternatives per token the engine returns (top_logprobs). */
export const MAX_TOP_LOGPROBS = 20;

/** A documented field the engine cannot honour: absent or null is accepted, any value is a 400 saying why. */
const refused = (why: string) =>
  z
    .unknown()
    .refine((value) => value === null || value === undefined, { message: `not supported: ${why}` })
    .optional()
    .describe(`Refused (400): ${why}`);

/** A documented field whose only honourable value is its default (e.g. `store: false`). */
const onlyDefault = <T extends z.core.util.Literal>(value: T, why: string) =>
  z.literal(value, { message: `only ${JSON.stringify(value)} is supported: ${why}` }).nullable().optional();

const stop = z
  .union([z.string(), z.array(z.string()).max(4, 'at most 4 stop sequences')])
  .nullable()
  .optional()
  .describe('Up to 4 strings; generation stops before any of them, which is not returned.');

const maxTokens = z
  .number()
  .int()
  .positive()
  .max(MAX_INT32)
  .nullable()
  .optional()
  .describe("Tokens to generate at most; must leave room for the prompt in the model's context (a 400 says how much)");

const penalty = z.number().min(-2).max(2).nullable().optional();

const logitBias = z
  .record(
    z.string().regex(/^(0|[1-9][0-9]{0,9})$/, 'logit_bias keys are token ids (decimal integers)').refine((id) => Number(id) <= MAX_INT32, 'token id too large'),
    z.number().min(-100).max(100),
  )
  .refine((bias) => Object.keys(bias).length <= 1024, 'at most 1024 logit_bias entries')
  .nullable()
  .optional()
  .describe('Token id (as a string) -> bias in [-100, 100] added to its logit before sampling');

const responseFormat = z
  .discriminatedUnion('type', [
    z.object({ type: z.literal('text') }).strict(),
    z.object({ type: z.literal('json_object') }).strict(),
    z
      .object({
        type: z.literal('json_schema'),
        json_schema: z
          .object({
            name: z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/, 'name: letters, digits, _ and - only'),
            description: z.string().optional(),
            schema: z.record(z.string(), z.unknown()).optional(),
            strict: z.boolean().nullable().optional(),
          })
          .strict(),
      })
      .strict(),
  ])
  .nullable()
  .optional()
  .describe('json_object: the reply is a JSON object; json_schema: JSON valid against the schema (constrained decoding)');

const streamOptions = z
  .object({
    include_usage: z.boolean().optional(),
    include_obfuscation: onlyDefault(false, 'streams are not padded'),
  })
  .strict()
  .nullable()
  .optional();

/** OpenAI's rule: stream_options only with stream: true (else it would be silently ignored). */
const streamOptionsNeedStream = [
  (body: { stream?: boolean | null; stream_options?: unknown }) => body.stream_options == null || body.stream === true,
  { message: 'stream_options is only allowed when stream is true', path: ['stream_options'] },
] as [(body: { stream?: boolean | null; stream_options?: unknown }) => boolean, { message: string; path: string[] }];

/** The fields both routes share; `n` is bounded by the gateway's configured maximum. */
const samplingFields = (maxChoices: number) => ({
  model: z.string().min(1).max(200).describe('`base`, a shared adapter (`copa`), or a tenant adapter (`acme/support`, `acme/support@2`)'),
  max_tokens: maxTokens,
  temperature: z.number().min(0).max(2).nullable().optional().describe('0 is greedy'),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional().describe('The same seed gives the same tokens, whatever else the batch holds'),
  stop,
  n: z.number().int().min(1).max(maxChoices).nullable().optional().describe(`Choices per prompt, at most ${maxChoices}; each counts as a request against the rate limit`),
  stream: z.boolean().nullable().optional(),
  stream_options: streamOptions,
  presence_penalty: penalty.describe('Minus this for every token already generated, in [-2, 2]'),
  frequency_penalty: penalty.describe("Minus this times the token's count in the output, in [-2, 2]"),
  logit_bias: logitBias,
  user: z.string().max(256).optional().describe('Recorded with the request in the usage log'),
  response_format: responseFormat,
  // vLLM's extensions
  top_k: z.number().int().min(-1).max(MAX_INT32).nullable().optional().describe('vLLM extension: sample among the k most likely tokens (0 or -1: all)'),
  repetition_penalty: z.number().gt(0).max(10).nullable().optional().describe("vLLM extension: transformers' repetition penalty on prompt and output tokens (1: none)"),
  ignore_eos: z.boolean().nullable().optional().describe('vLLM extension: keep generating past the end-of-sequence token'),
});

const textPart = z.object({ type: z.literal('text'), text: z.string() }).strict();

export const chatMessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant']),
    content: z.union([z.string(), z.array(textPart)]).nullable(),
    name: refused("the model's chat template has no participant names"),
    tool_calls: refused('tools are not supported'),
    function_call: refused('functions are not supported'),
    refusal: refused('refusals are not part of the chat template'),
    audio: refused('audio is not supported'),
  })
  .strict();

export const chatRequestSchema = (maxChoices: number) =>
  z
    .object({
      ...samplingFields(maxChoices),
      messages: z.array(chatMessageSchema).min(1, 'messages must not be empty'),
      max_completion_tokens: maxTokens,
      logprobs: z.boolean().nullable().optional(),
      top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullable().optional().describe(`Alternatives per token, at most ${MAX_TOP_LOGPROBS}; needs logprobs: true`),
      safety_identifier: z.string().max(256).optional().describe('Recorded with the request in the usage log, like user'),
      tools: refused('tool calling is not implemented; use response_format json_schema for structured replies'),
      tool_choice: onlyDefault('none', 'tool calling is not implemented'),
      parallel_tool_calls: refused('tool calling is not implemented'),
      functions: refused('functions are not supported'),
      function_call: refused('functions are not supported'),
      audio: refused('audio output is not supported'),
      modalities: z
        .array(z.literal('text', { message: 'only the text modality is supported' }))
        .nullable()
        .optional(),
      prediction: refused('predicted outputs are not supported'),
      reasoning_effort: refused('the model has no reasoning modes'),
      verbosity: refused('the model has no verbosity setting'),
      web_search_options: refused('web search is not available'),
      metadata: refused('stored completions are not supported'),
      store: onlyDefault(false, 'completions are not stored'),
      service_tier: z.enum(['auto', 'default'], { message: "only 'auto' and 'default' service tiers exist here" }).nullable().optional(),
      prompt_cache_key: refused('there is no prompt cache to route by'),
    })
    .strict()
    .refine((body) => !body.top_logprobs || body.logprobs === true, { message: 'top_logprobs needs logprobs: true', path: ['top_logprobs'] })
    .refine(...streamOptionsNeedStream);
export type ChatRequest = z.infer<ReturnType<typeof chatRequestSchema>>;

/** Token ids: each below 2^31 here, below the vocabulary at the worker (which refuses the rest with a 400). */
const tokenIds = z.array(z.number().int().nonnegative().max(MAX_INT32)).min(1);

export const completionRequestSchema = (maxChoices: number) =>
  z
    .object({
      ...samplingFields(maxChoices),
      prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
      logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullable().optional().describe(`Log-probabilities of the chosen tokens and this many alternatives (at most ${MAX_TOP_LOGPROBS})`),
      echo: onlyDefault(false, 'the prompt is not echoed'),
      best_of: onlyDefault(1, 'use n'),
      suffix: refused('insertion (suffix) is not supported'),
    })
    .strict()
    .refine(...streamOptionsNeedStream);
export type CompletionRequest = z.infer<ReturnType<typeof completionRequestSchema>>;

export const usageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
});

const finishReason = z.enum(['stop', 'length']).nullable();

const chatTokenLogprob = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable(),
  top_logprobs: z.array(z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()).nullable() })),
});

export const chatResponseSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({ role: z.literal('assistant'), content: z.string(), refusal: z.null() }),
      logprobs: z.object({ content: z.array(chatTokenLogprob), refusal: z.null() }).nullable(),
      finish_reason: finishReason,
    }),
  ),
  usage: usageSchema,
});
export type ChatResponse = z.infer<typeof chatResponseSchema>;

export const completionLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number()),
  top_logprobs: z.array(z.record(z.string(), z.number())),
  text_offset: z.array(z.number().int()),
});

export const completionResponseSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      logprobs: completionLogprobsSchema.nullable(),
      finish_reason: finishReason,
    }),
  ),
  usage: usageSchema,
});
export type CompletionResponse = z.infer<typeof completionResponseSchema>;

export const modelSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int(),
  owned_by: z.string(),
  kind: z.enum(['base', 'para', 'lora']).describe('The bare backbone, a PARA adapter or a peft LoRA adapter (an extension to OpenAI\'s object)'),
});

export const modelListSchema = z.object({ object: z.literal('list'), data: z.array(modelSchema) });

/** A 200 of a generation route: the JSON reply, or with `stream: true` server-sent events of chunks. */
export const generationReply = <T extends z.ZodType>(json: T) => ({
  description: 'The completion; with `stream: true`, server-sent events (`data: <chunk>`, then `data: [DONE]`)',
  content: {
    'application/json': { schema: json },
    // Before OpenAPI 3.2 an event stream's schema describes one event.
    'text/event-stream': {
      schema: z
        .object({ event: z.string().optional(), data: z.string(), id: z.string().optional(), retry: z.number().int().optional() })
        .describe('One event: `data` holds a chunk object as JSON, or `[DONE]`; `event: error` carries an OpenAI error object'),
    },
  },
});

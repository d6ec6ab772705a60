// Request and response bodies of the OpenAI-compatible routes. Fields the engine cannot honour are either
// rejected with a clear message (echo, best_of, suffix, top_logprobs > 0) or ignored as OpenAI-only
// bookkeeping (user, penalties are not listed and so are stripped).
import { z } from 'zod';

/** The widest the engine's uint32 fields are trusted to carry: larger numbers are refused, never wrapped. */
export const MAX_INT32 = 2 ** 31 - 1;

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

/** The fields both routes share; `n` is bounded by the gateway's configured maximum. */
const samplingFields = (maxChoices: number) => ({
  model: z.string().min(1).max(200).describe('`base`, a shared adapter (`copa`), or a tenant adapter (`acme/support`, `acme/support@2`)'),
  max_tokens: maxTokens,
  temperature: z.number().min(0).max(2).nullable().optional().describe('0 is greedy'),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  stop,
  n: z.number().int().min(1).max(maxChoices).nullable().optional().describe(`Choices per prompt, at most ${maxChoices}; each counts as a request against the rate limit`),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  user: z.string().max(256).optional(),
});

const textPart = z.object({ type: z.literal('text'), text: z.string() });

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(textPart)]).nullable(),
  name: z.string().optional(),
});

export const chatRequestSchema = (maxChoices: number) => z.object({
  ...samplingFields(maxChoices),
  messages: z.array(chatMessageSchema).min(1, 'messages must not be empty'),
  max_completion_tokens: maxTokens,
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z
    .number()
    .int()
    .min(0)
    .max(0, 'top_logprobs is not supported: the engine returns the chosen tokens\' log-probabilities only')
    .nullable()
    .optional(),
});
export type ChatRequest = z.infer<ReturnType<typeof chatRequestSchema>>;

/** Token ids: each below 2^31 here, below the vocabulary at the worker (which refuses the rest with a 400). */
const tokenIds = z.array(z.number().int().nonnegative().max(MAX_INT32)).min(1);

export const completionRequestSchema = (maxChoices: number) => z.object({
  ...samplingFields(maxChoices),
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  logprobs: z.number().int().min(0).max(5).nullable().optional(),
  echo: z.literal(false, { message: 'echo is not supported' }).nullable().optional(),
  best_of: z.literal(1, { message: 'best_of is not supported; use n' }).nullable().optional(),
  suffix: z.null({ message: 'suffix is not supported' }).optional(),
});
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

// POST /v1/completions: raw text (or token ids) in, text out; several prompts fan out like n.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { EngineInput } from '../../generation.js';
import { errorResponses } from '../../openapi.js';
import { completionId, nowSeconds, type OpenAIRouteDeps, prepare, servedModel } from './common.js';
import type { ChoiceFormat, TokenOut } from './execute.js';
import { type CompletionRequest, completionRequestSchema, type CompletionResponse, completionResponseSchema, generationReply } from './schemas.js';

function engineInputs(prompt: CompletionRequest['prompt']): EngineInput[] {
  if (typeof prompt === 'string') return [{ prompt }];
  if (prompt.every((p) => typeof p === 'string')) return (prompt as string[]).map((p) => ({ prompt: p }));
  if (prompt.every((p) => typeof p === 'number')) return [{ prompt_ids: { ids: prompt as number[] } }];
  return (prompt as number[][]).map((ids) => ({ prompt_ids: { ids } }));
}

/** OpenAI's legacy logprobs object. top_logprobs holds the `logprobs` most likely alternatives of each
 *  position and, as vLLM does, the chosen token when it is not among them. */
function legacyLogprobs(tokens: TokenOut[], startOffset: number) {
  let offset = startOffset;
  const text_offset: number[] = [];
  for (const t of tokens) {
    text_offset.push(offset);
    offset += t.text.length;
  }
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries([...t.top.map((a) => [a.text, a.logprob] as const), ...(t.top.some((a) => a.text === t.text) ? [] : [[t.text, t.logprob] as const])])),
    text_offset,
  };
}

export function completionRoutes(app: FastifyInstance, deps: OpenAIRouteDeps): void {
  app.withTypeProvider<ZodTypeProvider>().post('/v1/completions', {
    schema: {
      summary: 'Text completion (OpenAI-compatible); stream: true sends server-sent events',
      tags: ['inference'],
      security: [{ bearer: [] }],
      body: completionRequestSchema(deps.maxChoices),
      response: { 200: generationReply(completionResponseSchema), ...errorResponses },
    },
    handler: async (request, reply): Promise<CompletionResponse | undefined> => {
      const body = request.body;
      const { ctx, resolved, specs } = await prepare(deps, request, body.model, engineInputs(body.prompt), body, { value: body.max_tokens, param: 'max_tokens' }, { topLogprobs: body.logprobs ?? 0 });
      const id = completionId('cmpl');
      const created = nowSeconds();
      const model = servedModel(resolved);
      const wantLogprobs = body.logprobs != null;
      if (body.stream) {
        const chunk = (choices: object[], extra: object = {}) => ({ id, object: 'text_completion', created, model, choices, ...extra });
        const format: ChoiceFormat = {
          delta: (index, text, tokens, offset) =>
            chunk([{ index, text, logprobs: wantLogprobs ? legacyLogprobs(tokens, offset) : null, finish_reason: null }]),
          closing: (index, finishReason) => chunk([{ index, text: '', logprobs: null, finish_reason: finishReason }]),
          usage: (usage) => chunk([], { usage }),
        };
        await deps.runner.stream(ctx, resolved, specs, reply, format, body.stream_options?.include_usage === true);
        return undefined;
      }
      const { choices, usage } = await deps.runner.collect(ctx, resolved, specs, reply);
      return {
        id,
        object: 'text_completion',
        created,
        model,
        choices: choices.map((c) => ({
          index: c.index,
          text: c.text,
          logprobs: wantLogprobs ? legacyLogprobs(c.tokens, 0) : null,
          finish_reason: c.finishReason,
        })),
        usage,
      };
    },
  });
}

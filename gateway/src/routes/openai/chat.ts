// POST /v1/chat/completions: messages are rendered with the model's chat template by the engine.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ChatMessage } from '../../workers/proto.js';
import { completionId, nowSeconds, type OpenAIRouteDeps, prepare, servedModel } from './common.js';
import type { ChoiceFormat, TokenOut } from './execute.js';
import { type ChatRequest, chatRequestSchema, chatResponseSchema, type ChatResponse, generationReply } from './schemas.js';
import { errorResponses } from '../../openapi.js';

function engineMessages(messages: ChatRequest['messages']): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
  }));
}

const bytesOf = (text: string) => [...Buffer.from(text, 'utf8')];
const tokenLogprob = (t: TokenOut) => ({
  token: t.text,
  logprob: t.logprob,
  bytes: bytesOf(t.text),
  top_logprobs: t.top.map((a) => ({ token: a.text, logprob: a.logprob, bytes: bytesOf(a.text) })),
});

export function chatRoutes(app: FastifyInstance, deps: OpenAIRouteDeps): void {
  app.withTypeProvider<ZodTypeProvider>().post('/v1/chat/completions', {
    schema: {
      summary: 'Chat completion (OpenAI-compatible); stream: true sends server-sent events',
      tags: ['inference'],
      security: [{ bearer: [] }],
      body: chatRequestSchema(deps.maxChoices),
      response: { 200: generationReply(chatResponseSchema), ...errorResponses },
    },
    handler: async (request, reply): Promise<ChatResponse | undefined> => {
      const body = request.body;
      const maxTokens = body.max_completion_tokens != null
        ? { value: body.max_completion_tokens, param: 'max_completion_tokens' }
        : { value: body.max_tokens, param: 'max_tokens' };
      const topLogprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : 0;
      const { ctx, resolved, specs } = await prepare(deps, request, body.model, [{ chat: { messages: engineMessages(body.messages) } }], body, maxTokens, { topLogprobs });
      const id = completionId('chatcmpl');
      const created = nowSeconds();
      const model = servedModel(resolved);
      const wantLogprobs = body.logprobs === true;
      if (body.stream) {
        const chunk = (choices: object[], extra: object = {}) => ({ id, object: 'chat.completion.chunk', created, model, choices, ...extra });
        const format: ChoiceFormat = {
          opening: (index) => chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]),
          delta: (index, text, tokens) =>
            chunk([{ index, delta: { content: text }, logprobs: wantLogprobs ? { content: tokens.map(tokenLogprob), refusal: null } : null, finish_reason: null }]),
          closing: (index, finishReason) => chunk([{ index, delta: {}, logprobs: null, finish_reason: finishReason }]),
          usage: (usage) => chunk([], { usage }),
        };
        await deps.runner.stream(ctx, resolved, specs, reply, format, body.stream_options?.include_usage === true);
        return undefined;
      }
      const { choices, usage } = await deps.runner.collect(ctx, resolved, specs, reply);
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: choices.map((c) => ({
          index: c.index,
          message: { role: 'assistant', content: c.text, refusal: null },
          logprobs: wantLogprobs ? { content: c.tokens.map(tokenLogprob), refusal: null } : null,
          finish_reason: c.finishReason,
        })),
        usage,
      };
    },
  });
}

// Runs the choices of one OpenAI request as engine requests (n per prompt, fanned out together), either
// collecting them for a JSON reply or streaming them as server-sent events, and accounts for the result.
// The two routes differ only in how a choice is shaped, which they pass in as a ChoiceFormat.
import type { FastifyReply } from 'fastify';
import type { Accounting } from '../../accounting.js';
import type { Admission } from '../../limits.js';
import { ApiError } from '../../errors.js';
import type { EngineInput, Generation, GenerationService } from '../../generation.js';
import { SseStream } from '../../sse.js';
import type { GenerateChunk, SamplingParams } from '../../workers/proto.js';
import type { AdapterSource } from '../../workers/router.js';

export interface ChoiceSpec {
  index: number;
  promptIndex: number;
  input: EngineInput;
  sampling: SamplingParams;
}

export type FinishReason = 'stop' | 'length';

/** One generated token as reported back: its text (see tokensOf), log-probability and the most likely
 *  alternatives when they were asked for (top_logprobs). */
export interface TokenOut {
  text: string;
  logprob: number;
  top: { text: string; logprob: number }[];
}

export interface ChoiceResult {
  index: number;
  text: string;
  tokens: TokenOut[];
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** How one route shapes its stream chunks. */
export interface ChoiceFormat {
  /** Sent once per choice before any text (chat sends the assistant role). */
  opening?(index: number): object;
  delta(index: number, text: string, tokens: TokenOut[], offset: number): object;
  closing(index: number, finishReason: FinishReason): object;
  usage(usage: Usage): object;
}

export interface RequestContext {
  /** The tenant's name for metrics labels ('' for the operator). */
  tenant: string;
  /** The tenant's id usage is recorded under (0 for the operator). */
  tenantId: number;
  modelId: string;
  /** The end user the request named (OpenAI's `user`, else `safety_identifier`), recorded with its usage. */
  endUser?: string;
  startedAt: number;
  /** The request's hold on its tenant's rate limits, settled when it ends. */
  admission: Admission;
}

/**
 * Per-token text: the engine sends one chunk per token with the new text since the previous chunk (text can
 * be held back for a stop string or an incomplete character), so a chunk's text goes to its first token.
 * Text that arrives with no token (held back until the end) joins the previous token.
 */
export function tokensOf(chunk: GenerateChunk, previous: TokenOut[]): TokenOut[] {
  if (chunk.token_ids.length === 0) {
    const last = previous.at(-1);
    if (last) last.text += chunk.text;
    return [];
  }
  return chunk.token_ids.map((_, i) => {
    const alternatives = chunk.top_logprobs?.[i];
    const top = alternatives ? alternatives.ids.map((_, j) => ({ text: alternatives.texts[j] ?? '', logprob: alternatives.logprobs[j] ?? 0 })) : [];
    return { text: i === 0 ? chunk.text : '', logprob: chunk.logprobs[i] ?? 0, top };
  });
}

export const finishReasonOf = (engineReason: string): FinishReason => (engineReason === 'length' ? 'length' : 'stop');

export function usageOf(results: Pick<ChoiceResult, 'promptTokens' | 'completionTokens'>[], specs: ChoiceSpec[]): Usage {
  // OpenAI counts a prompt once however many choices it has.
  const prompts = new Map<number, number>();
  results.forEach((r, k) => prompts.set(specs[k]!.promptIndex, Math.max(prompts.get(specs[k]!.promptIndex) ?? 0, r.promptTokens)));
  const prompt = [...prompts.values()].reduce((a, b) => a + b, 0);
  const completion = results.reduce((a, r) => a + r.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export class ChoiceRunner {
  constructor(
    private readonly generations: GenerationService,
    private readonly accounting: Accounting,
  ) {}

  /** Starts every choice; if one cannot start, the others are cancelled and its error is thrown. */
  private async startAll(ctx: RequestContext, model: AdapterSource, specs: ChoiceSpec[]): Promise<Generation[]> {
    const started = await Promise.allSettled(specs.map((s) => this.generations.start(model, s.input, s.sampling)));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      // The choices that did start are cancelled, and billed for the tokens they already produced.
      const running = started.flatMap((s, k) => (s.status === 'fulfilled' ? [{ generation: s.value, spec: specs[k]! }] : []));
      for (const { generation } of running) generation.cancel();
      const used = await Promise.all(running.map(({ generation }) => generation.usage()));
      const usage = usageOf(used, running.map(({ spec }) => spec)); // a prompt once, however many of its choices ran
      await this.accounting.finish(ctx, { status: statusOf(failed.reason), promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
      throw failed.reason;
    }
    this.accounting.firstToken(ctx.startedAt);
    return started.map((s) => (s as PromiseFulfilledResult<Generation>).value);
  }

  async collect(ctx: RequestContext, model: AdapterSource, specs: ChoiceSpec[], reply: FastifyReply): Promise<{ choices: ChoiceResult[]; usage: Usage }> {
    const generations = await this.startAll(ctx, model, specs);
    const cancelAll = () => generations.forEach((g) => g.cancel());
    cancelWhenClientLeaves(reply, cancelAll);
    const partial: ChoiceResult[] = specs.map((s) => ({ index: s.index, text: '', tokens: [], finishReason: 'stop', promptTokens: 0, completionTokens: 0 }));
    try {
      await allSettledOrThrow(
        generations.map(async (g, k) => {
          const result = partial[k]!;
          try {
            for await (const chunk of g.chunks()) {
              result.text += chunk.text;
              result.tokens.push(...tokensOf(chunk, result.tokens));
              if (chunk.finish_reason) result.finishReason = finishReasonOf(chunk.finish_reason);
            }
          } catch (err) {
            cancelAll();
            throw err;
          } finally {
            // However the choice ended (finished, cancelled, failed), it used what the worker generated for it.
            Object.assign(result, await g.usage());
          }
        }),
      );
    } catch (err) {
      const usage = usageOf(partial, specs);
      await this.accounting.finish(ctx, { status: statusOf(err), promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
      throw err;
    }
    const usage = usageOf(partial, specs);
    const status = reply.raw.destroyed ? 499 : 200;
    await this.accounting.finish(ctx, { status, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
    return { choices: partial, usage };
  }

  async stream(ctx: RequestContext, model: AdapterSource, specs: ChoiceSpec[], reply: FastifyReply, format: ChoiceFormat, includeUsage: boolean): Promise<void> {
    const generations = await this.startAll(ctx, model, specs);
    // From here on the reply is ours: an error can no longer change the status, only end the stream.
    reply.hijack();
    const sse = new SseStream(reply.raw);
    sse.open();
    const cancelAll = () => generations.forEach((g) => g.cancel());
    cancelWhenClientLeaves(reply, cancelAll);
    const results = specs.map(() => ({ promptTokens: 0, completionTokens: 0 }));
    let failure: ApiError | undefined;
    for (const s of specs) if (format.opening) sse.send(format.opening(s.index));
    await Promise.all(
      generations.map(async (g, k) => {
        const index = specs[k]!.index;
        const tokens: TokenOut[] = [];
        let offset = 0;
        try {
          for await (const chunk of g.chunks()) {
            const fresh = tokensOf(chunk, tokens);
            tokens.push(...fresh);
            if (chunk.text || fresh.length > 0) sse.send(format.delta(index, chunk.text, fresh, offset));
            offset += chunk.text.length;
            if (chunk.finish_reason) sse.send(format.closing(index, finishReasonOf(chunk.finish_reason)));
          }
        } catch (err) {
          failure ??= err instanceof ApiError ? err : new ApiError(500, 'server_error', 'internal error', 'internal_error');
          cancelAll();
        } finally {
          // Finished, cancelled by a client that hung up, or failed: billed for what the worker generated.
          results[k] = await g.usage();
        }
      }),
    );
    const usage = usageOf(results, specs);
    let status = 200;
    const complete = !failure && !sse.closed;
    if (failure) {
      status = failure.status;
      sse.fail(failure.toBody());
    } else if (!complete) {
      status = 499; // the client went away
    } else if (includeUsage) {
      sse.send(format.usage(usage));
    }
    try {
      // Before [DONE]: a client that read the whole stream finds its usage counted, on whichever replica it asks.
      await this.accounting.finish(ctx, { status, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
    } finally {
      // The reply is hijacked, so nothing else would end it: a failed usage write must not leave the stream open
      // (the write's error still reaches the route's handler, which logs it).
      if (complete) sse.done();
      else if (!reply.raw.writableEnded) reply.raw.end();
    }
  }
}

/** Cancels the choices once the client is gone, including when it left while they were starting. */
function cancelWhenClientLeaves(reply: FastifyReply, cancelAll: () => void): void {
  if (reply.raw.destroyed) {
    cancelAll();
    return;
  }
  reply.raw.once('close', () => {
    if (!reply.raw.writableEnded) cancelAll();
  });
}

/**
 * Waits for every promise, then throws the first rejection: a choice's failure cancels its siblings, and their
 * usage (set as each one ends) must be in before the request is billed.
 */
async function allSettledOrThrow(promises: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
}

const statusOf = (err: unknown) => (err instanceof ApiError ? err.status : 500);

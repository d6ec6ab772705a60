// What both generation routes do before running: resolve the model for the caller, admit the request
// against the tenant's rate limits, and translate OpenAI's sampling fields to the engine's.
import { randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { callerTenantName } from '../../auth.js';
import { badRequest } from '../../errors.js';
import type { RateLimiter } from '../../limits.js';
import type { AdapterRegistry, ResolvedModel } from '../../registry/registry.js';
import type { SamplingParams } from '../../workers/proto.js';
import type { ChoiceRunner, ChoiceSpec, RequestContext } from './execute.js';
import type { EngineInput } from '../../generation.js';

export interface OpenAIRouteDeps {
  registry: AdapterRegistry;
  limiter: RateLimiter;
  runner: ChoiceRunner;
  maxChoices: number;
}

interface SamplingFields {
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
}

export function prepare(deps: OpenAIRouteDeps, request: FastifyRequest, model: string): { ctx: RequestContext; resolved: ResolvedModel } {
  const startedAt = performance.now();
  const resolved = deps.registry.resolve(request.caller, model);
  if (request.caller.kind === 'tenant') deps.limiter.admit(request.caller.tenant.name, request.caller.tenant);
  return { ctx: { tenant: callerTenantName(request.caller), modelId: resolved.id, startedAt }, resolved };
}

/** The model name replies carry: the version that served, as OpenAI names the snapshot behind an alias. */
export const servedModel = (resolved: ResolvedModel) => (resolved.version ? `${resolved.id}@${resolved.version}` : resolved.id);

/** One spec per (prompt, sample); sample j of a seeded request uses seed + j so the choices differ. */
export function choiceSpecs(deps: OpenAIRouteDeps, inputs: EngineInput[], body: SamplingFields, maxTokens: number | null | undefined): ChoiceSpec[] {
  const n = body.n ?? 1;
  if (n > deps.maxChoices) throw badRequest(`n must be at most ${deps.maxChoices}`, 'n');
  if (inputs.length * n > deps.maxChoices * 8) throw badRequest(`too many choices: ${inputs.length} prompts × n=${n}`, 'n');
  const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const specs: ChoiceSpec[] = [];
  inputs.forEach((input, promptIndex) => {
    for (let j = 0; j < n; j++) {
      const sampling: SamplingParams = {
        max_tokens: maxTokens ?? 0,
        temperature: body.temperature ?? 1,
        top_p: body.top_p ?? 1,
        stop: stop.filter((s) => s.length > 0),
      };
      if (body.seed != null) sampling.seed = body.seed + j;
      specs.push({ index: promptIndex * n + j, promptIndex, input, sampling });
    }
  });
  return specs;
}

export const completionId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;
export const nowSeconds = () => Math.floor(Date.now() / 1000);

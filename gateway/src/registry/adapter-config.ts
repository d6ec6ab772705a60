// adapter_config.json of an adapter: PARA (checked field by field as parapeft.ParaConfig does) or a peft LoRA
// adapter (its shape-defining fields checked here; peft writes many more keys, which the worker checks
// against what it serves), so a malformed config is a clear 400 here instead of an exception in a worker.
import { z } from 'zod';

const nullable = <T extends z.ZodType>(schema: T) => schema.nullable().optional();

// ParaConfig's variant settings: the engine serves the paper's form only, so a variant is refused here by name
// (the worker refuses it too), and the paper's values, which a config may spell out, are accepted.
const paperForm = (field: string, what: string) =>
  `${field}: the engine serves the paper's form of PARA (${what}); this PARA variant is for training and evaluation only`;
const VARIANT_TARGETS = ['k', 'o', 'down'];

export const paraAdapterConfigSchema = z
  .object({
    peft_type: z.literal('PARA', { message: "peft_type must be 'PARA'" }),
    r: z.number().int().positive(),
    pooler: z.enum(['mean', 'last', 'max', 'attention']).optional(),
    activation: z.enum(['silu', 'gelu', 'relu']).optional(),
    dropout: z.number().min(0).lt(1).optional(),
    targets: z
      .array(
        z.enum(['q', 'v', 'up'], {
          error: (issue) => (VARIANT_TARGETS.includes(String(issue.input)) ? paperForm('targets', 'q, v and up')
            : 'targets must be among q, v, up'),
        }),
      )
      .min(1)
      .refine((t) => new Set(t).size === t.length, 'targets must not repeat')
      .optional(),
    layers_to_transform: nullable(z.array(z.number().int().nonnegative()).min(1)),
    static_bias: z.literal(false, { message: paperForm('static_bias', 'no static bias') }).optional(),
    scale_form: z.literal('linear', { message: paperForm('scale_form', 'multipliers 1 + l') }).optional(),
    generator_input: z.literal('normed', { message: paperForm('generator_input', "each layer's normalised input") }).optional(),
    granularity: z.literal('channel', { message: paperForm('granularity', 'one multiplier per channel') }).optional(),
    pool_layer: z.null({ message: paperForm('pool_layer', 'no pooling from deeper') }).optional(),
    base_model_name_or_path: nullable(z.string().max(1024)),
    base_model_variant: nullable(z.string().max(128)),
    model_type: nullable(z.string().max(128)),
    dims: nullable(z.record(z.string().max(64), z.number().int().nonnegative())),
    format_version: z.number().int().min(1).max(1, 'format_version newer than this gateway supports (1)').optional(),
    // peft's generic keys, which ParaConfig loads with a warning
    peft_version: nullable(z.string().max(64)),
    task_type: nullable(z.literal('CAUSAL_LM', { message: "task_type must be 'CAUSAL_LM'" })),
    revision: nullable(z.string().max(256)),
    inference_mode: nullable(z.boolean()),
  })
  .strict();

export type ParaAdapterConfig = z.infer<typeof paraAdapterConfigSchema>;

/** The projections the engine serves LoRA on (peft's module names in Llama-style decoders). */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

export const loraAdapterConfigSchema = z
  .object({
    peft_type: z.literal('LORA'),
    r: z.number().int().positive().max(4096),
    lora_alpha: z.number().positive().optional(),
    target_modules: z.union([z.array(z.enum(LORA_TARGETS, { message: `target_modules must be among ${LORA_TARGETS.join(', ')}` })).min(1), z.string().min(1)]),
    base_model_name_or_path: nullable(z.string().max(1024)),
  })
  .loose();

export type LoraAdapterConfig = z.infer<typeof loraAdapterConfigSchema>;

export type AdapterKind = 'para' | 'lora';
export type ParsedAdapterConfig = { kind: 'para'; config: ParaAdapterConfig } | { kind: 'lora'; config: LoraAdapterConfig };

export class AdapterConfigError extends Error {}

/** The config's kind from its peft_type (PARA or LORA), then its fields; anything else is refused by name. */
export function parseAdapterConfig(text: Buffer): ParsedAdapterConfig {
  let json: unknown;
  try {
    json = JSON.parse(text.toString('utf8'));
  } catch {
    throw new AdapterConfigError('adapter_config.json is not valid JSON');
  }
  const peftType = typeof json === 'object' && json !== null ? String((json as { peft_type?: unknown }).peft_type ?? '').toUpperCase() : '';
  if (peftType !== 'PARA' && peftType !== 'LORA') {
    throw new AdapterConfigError("adapter_config.json: peft_type: must be 'PARA' or 'LORA' (the kinds the engine serves)");
  }
  const parsed = peftType === 'PARA' ? paraAdapterConfigSchema.safeParse(json) : loraAdapterConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AdapterConfigError(`adapter_config.json: ${issue?.path.join('.') || 'root'}: ${issue?.message}`);
  }
  return peftType === 'PARA' ? { kind: 'para', config: parsed.data as ParaAdapterConfig } : { kind: 'lora', config: parsed.data as LoraAdapterConfig };
}

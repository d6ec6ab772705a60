// adapter_config.json of a PARA adapter, checked field by field as parapeft.ParaConfig does, so a malformed
// config is a clear 400 here instead of an exception inside a worker.
import { z } from 'zod';

const nullable = <T extends z.ZodType>(schema: T) => schema.nullable().optional();

export const paraAdapterConfigSchema = z
  .object({
    peft_type: z.literal('PARA', { message: "peft_type must be 'PARA'" }),
    r: z.number().int().positive(),
    pooler: z.enum(['mean', 'last', 'max', 'attention']).optional(),
    activation: z.enum(['silu', 'gelu', 'relu']).optional(),
    dropout: z.number().min(0).lt(1).optional(),
    targets: z
      .array(z.enum(['q', 'v', 'up']))
      .min(1)
      .refine((t) => new Set(t).size === t.length, 'targets must not repeat')
      .optional(),
    layers_to_transform: nullable(z.array(z.number().int().nonnegative()).min(1)),
    base_model_name_or_path: nullable(z.string().max(1024)),
    model_type: nullable(z.string().max(128)),
    dims: nullable(z.record(z.string().max(64), z.number().int().nonnegative())),
    format_version: z.number().int().min(1).max(1, 'format_version newer than this gateway supports (1)').optional(),
  })
  .strict();

export type ParaAdapterConfig = z.infer<typeof paraAdapterConfigSchema>;

export class AdapterConfigError extends Error {}

export function parseAdapterConfig(text: Buffer): ParaAdapterConfig {
  let json: unknown;
  try {
    json = JSON.parse(text.toString('utf8'));
  } catch {
    throw new AdapterConfigError('adapter_config.json is not valid JSON');
  }
  const parsed = paraAdapterConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AdapterConfigError(`adapter_config.json: ${issue?.path.join('.') || 'root'}: ${issue?.message}`);
  }
  return parsed.data;
}

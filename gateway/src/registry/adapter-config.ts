// adapter_config.json of a PARA adapter: the fields the gateway checks before asking a worker for the rest.
import { z } from 'zod';

export const paraAdapterConfigSchema = z
  .object({
    peft_type: z.literal('PARA', { message: "peft_type must be 'PARA'" }),
    r: z.number().int().positive(),
    targets: z.array(z.string()).min(1).optional(),
    base_model_name_or_path: z.string().optional(),
  })
  .loose();

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

// Checks a safetensors file without trusting it: an 8-byte little-endian header length, a JSON header,
// known dtypes, and every tensor's byte range matching its shape, inside the file, with no overlaps or holes.
// Nothing else in the file is interpreted (and safetensors holds no code, unlike pickle).
import { z } from 'zod';

export const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** The dtypes an adapter's weights may have (integer tensors are not weights). */
export const WEIGHT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16']);

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {}

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsSummary {
  tensors: TensorInfo[];
  parameters: number;
  metadata: Record<string, string>;
}

const tensorEntry = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

export function parseSafetensors(file: Buffer): SafetensorsSummary {
  if (file.length < 8) throw new SafetensorsError('not a safetensors file: shorter than its 8-byte header length');
  const headerLength = file.readBigUInt64LE(0);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, file.length - 8))) {
    throw new SafetensorsError(`not a safetensors file: header length ${headerLength} exceeds the file`);
  }
  const headerEnd = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(file.subarray(8, headerEnd).toString('utf8'));
  } catch {
    throw new SafetensorsError('not a safetensors file: the header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError('not a safetensors file: the header is not a JSON object');
  }
  const dataLength = file.length - headerEnd;
  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      const parsed = z.record(z.string(), z.string()).safeParse(raw);
      if (!parsed.success) throw new SafetensorsError('safetensors __metadata__ must map strings to strings');
      metadata = parsed.data;
      continue;
    }
    const entry = tensorEntry.safeParse(raw);
    if (!entry.success) throw new SafetensorsError(`tensor '${name}': needs dtype, shape and data_offsets`);
    const { dtype, shape, data_offsets: [begin, end] } = entry.data;
    const size = DTYPE_BYTES[dtype];
    if (size === undefined) throw new SafetensorsError(`tensor '${name}': unknown dtype ${dtype}`);
    if (!WEIGHT_DTYPES.has(dtype)) throw new SafetensorsError(`tensor '${name}': dtype ${dtype} is not a float type`);
    const elements = shape.reduce((a, b) => a * b, 1);
    if (begin > end || end > dataLength) {
      throw new SafetensorsError(`tensor '${name}': data_offsets [${begin}, ${end}] lie outside the ${dataLength} data bytes`);
    }
    if (end - begin !== elements * size) {
      throw new SafetensorsError(`tensor '${name}': ${end - begin} bytes for shape [${shape.join(', ')}] of ${dtype}`);
    }
    tensors.push({ name, dtype, shape, begin, end });
  }
  if (tensors.length === 0) throw new SafetensorsError('the safetensors file holds no tensors');
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of tensors) {
    if (t.begin !== cursor) {
      throw new SafetensorsError(`tensor '${t.name}': data ${t.begin < cursor ? 'overlaps the previous tensor' : 'leaves a hole'}`);
    }
    cursor = t.end;
  }
  if (cursor !== dataLength) throw new SafetensorsError(`${dataLength - cursor} trailing bytes after the last tensor`);
  const parameters = tensors.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
  return { tensors, parameters, metadata };
}

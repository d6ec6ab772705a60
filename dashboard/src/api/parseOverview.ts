import type { Overview } from './overview';

/**
 * Checks the top-level shape of an overview body before the page renders it, so that a
 * gateway speaking another version of the API produces one clear message instead of a
 * page half drawn and a stack trace in the console. Field types inside the arrays are
 * trusted: the gateway and this page are released together.
 */
export function parseOverview(body: unknown): Overview | { problem: string } {
  if (!isRecord(body)) return { problem: 'the body is not a JSON object' };
  const arrays = ['tenants', 'adapters', 'workers', 'series'] as const;
  for (const field of arrays) {
    if (!Array.isArray(body[field])) return { problem: `"${field}" is missing or not a list` };
  }
  if (typeof body['now'] !== 'number') return { problem: '"now" is missing or not a number' };
  if (typeof body['backbone'] !== 'string') return { problem: '"backbone" is missing or not a string' };
  if (!isRecord(body['latency_ms'])) return { problem: '"latency_ms" is missing' };
  const quality = body['quality'];
  if (!isRecord(quality) || !Array.isArray(quality['rows'])) {
    return { problem: '"quality.rows" is missing or not a list' };
  }
  return body as unknown as Overview;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

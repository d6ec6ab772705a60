import { describe, expect, it, vi } from 'vitest';
import { fetchOverview, OVERVIEW_PATH } from '../../src/api/fetchOverview';
import { overviewWith } from './overviewBuilder';

function replying(status: number, body: unknown): typeof fetch {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return vi.fn(async () => new Response(text, { status, headers: { 'Content-Type': 'application/json' } }));
}

const openAiError = (message: string) => ({ error: { message, type: 'x', param: null, code: null } });

describe('fetchOverview', () => {
  it('sends the key as a bearer token to the same-origin overview path', async () => {
    const fetchImpl = replying(200, overviewWith());
    await fetchOverview('op-key', { fetchImpl });
    const [url, init] = vi.mocked(fetchImpl).mock.calls[0] ?? [];
    expect(url).toBe(OVERVIEW_PATH);
    expect(url).toBe('/admin/v1/overview');
    expect(new Headers(init?.headers).get('Authorization')).toBe('Bearer op-key');
  });

  it('returns the overview on 200', async () => {
    const overview = overviewWith({ backbone: 'qwen' });
    expect(await fetchOverview('k', { fetchImpl: replying(200, overview) })).toEqual({ kind: 'ok', overview });
  });

  it.each([401, 403] as const)('reports %i as a rejected key with the gateway’s message', async (status) => {
    const result = await fetchOverview('k', { fetchImpl: replying(status, openAiError('missing or unknown API key')) });
    expect(result).toEqual({ kind: 'rejected-key', status, message: 'missing or unknown API key' });
  });

  it('reports other errors as gateway errors', async () => {
    const result = await fetchOverview('k', { fetchImpl: replying(503, openAiError('no healthy worker')) });
    expect(result).toEqual({ kind: 'gateway-error', status: 503, message: 'no healthy worker' });
  });

  it('falls back to the status when the error body is not OpenAI-shaped', async () => {
    const result = await fetchOverview('k', { fetchImpl: replying(502, '<html>Bad Gateway</html>') });
    expect(result).toMatchObject({ kind: 'gateway-error', status: 502 });
    expect(result.kind === 'gateway-error' && result.message.length > 0).toBe(true);
  });

  it('rejects a 200 that is not an overview, naming the field', async () => {
    const { series: _dropped, ...withoutSeries } = overviewWith();
    const result = await fetchOverview('k', { fetchImpl: replying(200, withoutSeries) });
    expect(result).toEqual({ kind: 'gateway-error', status: 200, message: 'unexpected reply: "series" is missing or not a list' });
    expect(await fetchOverview('k', { fetchImpl: replying(200, 'not json') })).toMatchObject({ message: 'the reply is not JSON' });
  });

  it('reports a failed connection as unreachable', async () => {
    const fetchImpl = vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    });
    expect(await fetchOverview('k', { fetchImpl })).toEqual({ kind: 'unreachable', message: 'Failed to fetch' });
  });

  it('gives up on a request that hangs', async () => {
    const hanging: typeof fetch = (_url, init) =>
      new Promise((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason)));
    expect(await fetchOverview('k', { fetchImpl: hanging, timeoutMs: 20 })).toEqual({
      kind: 'unreachable',
      message: 'the request timed out',
    });
  });
});

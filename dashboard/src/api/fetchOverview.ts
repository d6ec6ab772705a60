import type { Overview } from './overview';
import { parseOverview } from './parseOverview';

/** Root-relative: the dashboard is served by the gateway it reports on. */
export const OVERVIEW_PATH = '/admin/v1/overview';

export type OverviewResult =
  | { kind: 'ok'; overview: Overview }
  /** 401: missing or unknown key; 403: a tenant key on an operator route. */
  | { kind: 'rejected-key'; status: 401 | 403; message: string }
  /** The gateway answered, but not with an overview (5xx, unexpected body). */
  | { kind: 'gateway-error'; status: number; message: string }
  /** No answer at all: gateway down, connection reset, timeout. */
  | { kind: 'unreachable'; message: string };

export interface FetchOverviewOptions {
  fetchImpl?: typeof fetch;
  /** A hung request must not stall polling forever. */
  timeoutMs?: number;
}

export async function fetchOverview(
  operatorKey: string,
  { fetchImpl = fetch, timeoutMs = 5_000 }: FetchOverviewOptions = {},
): Promise<OverviewResult> {
  let response: Response;
  try {
    response = await fetchImpl(OVERVIEW_PATH, {
      headers: { Authorization: `Bearer ${operatorKey}`, Accept: 'application/json' },
      cache: 'no-store',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    return { kind: 'unreachable', message: describeThrown(error) };
  }

  if (response.status === 401 || response.status === 403) {
    return { kind: 'rejected-key', status: response.status, message: await errorMessage(response) };
  }
  if (!response.ok) {
    return { kind: 'gateway-error', status: response.status, message: await errorMessage(response) };
  }

  let body: unknown;
  try {
    body = await response.json();
  } catch {
    return { kind: 'gateway-error', status: response.status, message: 'the reply is not JSON' };
  }
  const parsed = parseOverview(body);
  if ('problem' in parsed) {
    return { kind: 'gateway-error', status: response.status, message: `unexpected reply: ${parsed.problem}` };
  }
  return { kind: 'ok', overview: parsed };
}

/** Reads OpenAI's error shape (`{"error": {"message": …}}`), which every gateway error uses. */
async function errorMessage(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (typeof body === 'object' && body !== null && 'error' in body) {
      const error = (body as { error: unknown }).error;
      if (typeof error === 'object' && error !== null && 'message' in error) {
        const message = (error as { message: unknown }).message;
        if (typeof message === 'string' && message !== '') return message;
      }
    }
  } catch {
    // Not JSON (a proxy's HTML error page, say): fall back to the status text.
  }
  return response.statusText || `HTTP ${response.status}`;
}

function describeThrown(error: unknown): string {
  if (error instanceof DOMException && error.name === 'TimeoutError') return 'the request timed out';
  if (error instanceof Error && error.message !== '') return error.message;
  return 'the request failed';
}

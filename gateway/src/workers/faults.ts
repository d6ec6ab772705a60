// Whose fault a failed gRPC call is, from its status code (the table in docs/gateway-api.md, shared with the
// engine). Only a broken connection says the worker is gone; a request the worker refused or that failed by
// itself must never take the worker out, or one tenant's bad input would cancel every tenant's streams there.
import { grpcStatus, isServiceError } from './client.js';

export type Fault =
  /** The connection is refused, reset or broken: the worker is taken out. */
  | 'transport'
  /** The worker failed or answered nothing in time; before the first token the request may go elsewhere. */
  | 'worker'
  /** The worker is full; another worker may take the request. */
  | 'busy'
  /** The request is malformed or out of range for the worker, or failed by its own fault (its adapter). */
  | 'request'
  /** The worker does not hold the adapter (it restarted): push it again. */
  | 'missing_adapter'
  /** LoadAdapter of an adapter the worker already holds. */
  | 'exists';

export function faultOf(err: unknown): Fault {
  if (!isServiceError(err)) return 'worker'; // grpc-js reports every connection failure as a ServiceError

  switch (err.code) {
    case grpcStatus.UNAVAILABLE:
      return 'transport';
    case grpcStatus.RESOURCE_EXHAUSTED:
      return 'busy';
    case grpcStatus.INVALID_ARGUMENT:
    case grpcStatus.OUT_OF_RANGE:
    case grpcStatus.FAILED_PRECONDITION:
      return 'request';
    case grpcStatus.NOT_FOUND:
      return 'missing_adapter';
    case grpcStatus.ALREADY_EXISTS:
      return 'exists';
    default: // INTERNAL, UNKNOWN, DEADLINE_EXCEEDED, CANCELLED (not by us), UNIMPLEMENTED, ...
      return 'worker';
  }
}

const detailsOf = (err: unknown) => (isServiceError(err) ? err.details : err instanceof Error ? err.message : String(err));

/**
 * A worker's message made fit for a client: no Python exception wrapper or traceback, no file system paths
 * (a worker writes inline adapters to temporary folders), one line, bounded in length.
 */
export function clientMessage(err: unknown): string {
  let text = detailsOf(err).split(/\n|Traceback \(most recent call last\)/)[0] ?? '';
  text = text.replace(/^Exception (?:calling|iterating) application: /, '');
  // An absolute path keeps only its last part: '/tmp/para-adapter-x1/adapter_config.json' -> 'adapter_config.json'.
  // Only a path that starts a word counts, so adapter ids like 'acme/support@2' are left alone.
  text = text.replace(/(?<![\w@.-])(?:[A-Za-z]:)?(?:[\\/][^\s'"`:,;()[\]{}\\/]+)+[\\/]?/g, (path) => {
    const last = path.split(/[\\/]/).filter(Boolean).at(-1) ?? '';
    return /\.(json|safetensors)$/.test(last) ? last : '<adapter>';
  });
  text = text.trim();
  return text.length > 300 ? `${text.slice(0, 297)}...` : text || 'the worker refused the request';
}

/** The request field a worker's INVALID_ARGUMENT names (its `param` trailing metadata), if any. */
export function paramOf(err: unknown): string | null {
  if (!isServiceError(err)) return null;
  const value = err.metadata?.get('param')[0];
  return typeof value === 'string' && /^[a-z_][a-z0-9_.]{0,63}$/.test(value) ? value : null;
}

/** For logs: the worker's own words. */
export const workerDetails = detailsOf;

import type { OverviewResult } from './fetchOverview';

type RejectedKey = Extract<OverviewResult, { kind: 'rejected-key' }>;
type TransientFailure = Extract<OverviewResult, { kind: 'gateway-error' | 'unreachable' }>;

/** Shown above the key form after the gateway refused the key. */
export function rejectedKeyMessage(result: RejectedKey): string {
  if (result.status === 403) {
    return 'That key belongs to a tenant (403). The dashboard needs the operator key.';
  }
  return 'The gateway did not accept that key (401). Enter the operator key.';
}

/** Shown in the banner while polling keeps retrying. */
export function transientFailureMessage(result: TransientFailure, retryEverySeconds: number): string {
  const retry = `Retrying every ${retryEverySeconds} s; the figures below are from the last good reply.`;
  if (result.kind === 'unreachable') {
    return `Cannot reach the gateway (${result.message}). ${retry}`;
  }
  return `The gateway answered ${result.status}: ${result.message}. ${retry}`;
}

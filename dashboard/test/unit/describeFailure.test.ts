import { describe, expect, it } from 'vitest';
import { rejectedKeyMessage, transientFailureMessage } from '../../src/api/describeFailure';

describe('failure messages', () => {
  it('tells a wrong key from a tenant key', () => {
    expect(rejectedKeyMessage({ kind: 'rejected-key', status: 401, message: '' })).toContain('did not accept that key (401)');
    expect(rejectedKeyMessage({ kind: 'rejected-key', status: 403, message: '' })).toContain('belongs to a tenant (403)');
  });

  it('says the page keeps retrying', () => {
    expect(transientFailureMessage({ kind: 'unreachable', message: 'Failed to fetch' }, 2)).toBe(
      'Cannot reach the gateway (Failed to fetch). Retrying every 2 s; the figures below are from the last good reply.',
    );
    expect(transientFailureMessage({ kind: 'gateway-error', status: 503, message: 'no healthy worker' }, 2)).toMatch(
      /^The gateway answered 503: no healthy worker\. Retrying every 2 s/,
    );
  });
});

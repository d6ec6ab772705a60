// Whose fault a worker's gRPC status is (the table in docs/gateway-api.md), and what of a worker's message
// may reach a client. The end-to-end behaviour is in poison.test.ts; this pins the table itself.
import { Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { clientMessage, faultOf } from '../src/workers/faults.js';

const grpcError = (code: number, details: string) => Object.assign(new Error(`${code} ${details}`), { code, details, metadata: new Metadata() });

describe('faultOf', () => {
  it.each([
    [status.UNAVAILABLE, 'transport'],
    [status.INTERNAL, 'worker'],
    [status.UNKNOWN, 'worker'],
    [status.DEADLINE_EXCEEDED, 'worker'],
    [status.CANCELLED, 'worker'],
    [status.RESOURCE_EXHAUSTED, 'busy'],
    [status.INVALID_ARGUMENT, 'request'],
    [status.OUT_OF_RANGE, 'request'],
    [status.FAILED_PRECONDITION, 'request'],
    [status.NOT_FOUND, 'missing_adapter'],
    [status.ALREADY_EXISTS, 'exists'],
  ])('status %i is a %s fault', (code, fault) => {
    expect(faultOf(grpcError(code, 'x'))).toBe(fault);
  });

  it('never blames the connection for an error that is not a gRPC status', () => {
    expect(faultOf(new Error('ENOENT: no such file'))).toBe('worker');
  });
});

describe('clientMessage', () => {
  it.each([
    ['Exception calling application: cannot read the adapter config in /tmp/para-adapter-k2x9/: bad', 'cannot read the adapter config in <adapter>: bad'],
    ['/tmp/para-adapter-x1/adapter_model.safetensors: tensor layers.0.up.weight has shape (1, 2)', 'adapter_model.safetensors: tensor layers.0.up.weight has shape (1, 2)'],
    ["unknown adapter 'acme/support@2'; loaded: copa@1, acme/x@3", "unknown adapter 'acme/support@2'; loaded: copa@1, acme/x@3"],
    ['prompt (300 tokens) + max_tokens (2) exceeds the context of 256', 'prompt (300 tokens) + max_tokens (2) exceeds the context of 256'],
    ['bad value\nTraceback (most recent call last):\n  File "/srv/engine.py", line 1', 'bad value'],
    ['', 'the worker refused the request'],
  ])('cleans %j', (details, expected) => {
    expect(clientMessage(grpcError(status.INVALID_ARGUMENT, details))).toBe(expected);
  });

  it('bounds the length', () => {
    expect(clientMessage(grpcError(status.INVALID_ARGUMENT, 'x'.repeat(1000))).length).toBe(300);
  });
});

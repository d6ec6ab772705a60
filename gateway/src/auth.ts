// Bearer keys: the operator key (compared in constant time) or a tenant key (looked up by its SHA-256).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { KeyStore } from './db/keys.js';
import type { Tenant } from './db/tenants.js';
import { forbidden, unauthorized } from './errors.js';

export type Caller = { kind: 'operator' } | { kind: 'tenant'; tenant: Tenant };

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest();

export class Authenticator {
  private readonly operatorDigest: Buffer | undefined;

  constructor(
    operatorKey: string | undefined,
    private readonly keys: KeyStore,
  ) {
    this.operatorDigest = operatorKey ? digest(operatorKey) : undefined;
  }

  async identify(authorization: string | undefined): Promise<Caller> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match?.[1]) throw unauthorized('missing API key: send Authorization: Bearer <key>');
    const key = match[1];
    if (this.operatorDigest && timingSafeEqual(digest(key), this.operatorDigest)) return { kind: 'operator' };
    const tenant = await this.keys.tenantForKey(key);
    if (!tenant) throw unauthorized('invalid API key');
    return { kind: 'tenant', tenant };
  }

  /** onRequest hook: runs before the body is read, so unauthenticated uploads are refused cheaply. */
  readonly requireKey = async (request: FastifyRequest, _reply: FastifyReply) => {
    request.caller = await this.identify(request.headers.authorization);
  };

  readonly requireOperator = async (request: FastifyRequest, _reply: FastifyReply) => {
    request.caller = await this.identify(request.headers.authorization);
    if (request.caller.kind !== 'operator') throw forbidden('this route needs the operator key');
  };
}

/** The name usage is recorded under: the tenant's, or '' for the operator. */
export const callerTenantName = (caller: Caller) => (caller.kind === 'tenant' ? caller.tenant.name : '');

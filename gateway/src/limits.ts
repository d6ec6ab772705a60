// Per-tenant rate limits over a minute, with rate-limiter-flexible: in PostgreSQL (RateLimiterPostgres), so
// every replica on one database counts against the same windows, or in memory (RateLimiterMemory) for a
// gateway on SQLite, which is the only one using its file. Keyed by tenant id
// (never reused). A request is admitted with its cost: its choices count as requests at once, and its most
// possible tokens (max_tokens per choice) are reserved, so requests running in parallel, on any replica, can
// never together overrun the tokens per minute. When it ends the reservation is settled to the tokens it really
// used; a request that failed by the gateway's own fault (5xx) is refunded entirely. A tenant over either limit
// gets 429 with Retry-After until its window ends.
//
// Each window is fixed: it starts with a tenant's first request and lasts a minute. Every step is one atomic
// add-and-read (an upsert in PostgreSQL); a request that would go over is added, seen to be over and taken
// back, so two replicas racing at the limit can both refuse, never both admit.
import { RateLimiterMemory, RateLimiterPostgres, type RateLimiterRes } from 'rate-limiter-flexible';
import { RATE_LIMIT_TABLE } from './db/migrations.js';
import type { LimiterConnection } from './db/store.js';
import { ApiError } from './errors.js';

const WINDOW_S = 60;

export interface Limits {
  rpm: number;
  tpm: number;
}

/** What one admitted request may spend. */
export interface Cost {
  /** Engine requests (prompts × n). */
  requests: number;
  /** Tokens reserved until the request ends. */
  tokens: number;
  /** The field a refusal names when the choices alone are over the requests per minute (default `n`). */
  choicesParam?: 'n' | 'prompt';
}

/** An admitted request's hold on its tenant's limits; settled exactly once when the request ends. */
export interface Admission {
  /** The request ended having used `tokens` (prompt + completion). */
  settle(tokens: number): Promise<void>;
  /** The request failed by the gateway's fault: neither its requests nor its tokens count. */
  refund(): Promise<void>;
}

export const NO_ADMISSION: Admission = { settle: async () => undefined, refund: async () => undefined };

type Window = RateLimiterPostgres | RateLimiterMemory;

function windowIn(connection: LimiterConnection, keyPrefix: string): Window {
  // points is the limiter's own ceiling, unused here: each tenant's limit is compared below, so it is set out
  // of reach. The PostgreSQL table is created by migration 003.
  const common = { keyPrefix, points: Number.MAX_SAFE_INTEGER, duration: WINDOW_S };
  return connection.dialect === 'postgres'
    ? new RateLimiterPostgres({ ...common, storeClient: connection.client, storeType: 'pool', tableName: RATE_LIMIT_TABLE, tableCreated: true })
    : new RateLimiterMemory(common);
}

/** When a window read back now ends, in ms since the epoch. */
const endOf = (res: RateLimiterRes) => Date.now() + res.msBeforeNext;
const retryAfterS = (res: RateLimiterRes) => Math.max(1, Math.ceil(res.msBeforeNext / 1000));

export class RateLimiter {
  private readonly requests: Window;
  private readonly tokens: Window;

  constructor(connection: LimiterConnection) {
    this.requests = windowIn(connection, 'rpm');
    this.tokens = windowIn(connection, 'tpm');
  }

  /** Admits a request or throws 429. */
  async admit(tenantId: number, limits: Limits, cost: Cost): Promise<Admission> {
    if (cost.tokens > limits.tpm) {
      throw limited(
        `this request may use up to ${cost.tokens} tokens (its prompts, estimated, and max_tokens × choices), more than the limit of ${limits.tpm} tokens per minute; lower max_tokens`,
        WINDOW_S,
        'max_tokens',
      );
    }
    if (cost.requests > limits.rpm) {
      throw limited(
        `this request counts as ${cost.requests} requests (n × prompts), more than the limit of ${limits.rpm} requests per minute; lower ${cost.choicesParam ?? 'n'}`,
        WINDOW_S,
        cost.choicesParam ?? 'n',
      );
    }
    const key = String(tenantId);
    const requests = await this.requests.penalty(key, cost.requests);
    if (requests.consumedPoints > limits.rpm) {
      await this.requests.reward(key, cost.requests);
      throw limited(`rate limit reached: ${limits.rpm} requests per minute (a request with n choices counts n)`, retryAfterS(requests));
    }
    let tokens: RateLimiterRes;
    try {
      tokens = await this.tokens.penalty(key, cost.tokens);
    } catch (err) {
      await this.requests.reward(key, cost.requests).catch(() => undefined); // the request was never admitted
      throw err;
    }
    if (tokens.consumedPoints > limits.tpm) {
      await Promise.all([this.tokens.reward(key, cost.tokens), this.requests.reward(key, cost.requests)]);
      throw limited(`rate limit reached: ${limits.tpm} tokens per minute`, retryAfterS(tokens));
    }
    const requestsEnd = endOf(requests);
    const tokensEnd = endOf(tokens);
    let open = true;
    const release = () => {
      const was = open;
      open = false;
      return was;
    };
    return {
      settle: async (used) => {
        if (!release()) return;
        if (Date.now() < tokensEnd) {
          // Still the window the reservation went into: correct it to what was used.
          const delta = used - cost.tokens;
          if (delta > 0) await this.tokens.penalty(key, delta);
          else if (delta < 0) await this.tokens.reward(key, -delta);
        } else if (used > 0) {
          // That window (and the reservation with it) is gone: what was used counts in the current one.
          await this.tokens.penalty(key, used);
        }
      },
      refund: async () => {
        if (!release()) return;
        const now = Date.now();
        await Promise.all([
          now < tokensEnd && cost.tokens > 0 ? this.tokens.reward(key, cost.tokens) : undefined,
          now < requestsEnd ? this.requests.reward(key, cost.requests) : undefined,
        ]);
      },
    };
  }

  /** Drops a deleted tenant's windows. */
  async forget(tenantId: number): Promise<void> {
    await Promise.all([this.requests.delete(String(tenantId)), this.tokens.delete(String(tenantId))]);
  }
}

function limited(message: string, retryAfterS: number, param: string | null = null): ApiError {
  return new ApiError(429, 'rate_limit_error', message, 'rate_limit_exceeded', param, { 'retry-after': String(retryAfterS) });
}

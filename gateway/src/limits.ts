// Per-tenant rate limits over a sliding minute, in one-second buckets: requests are counted when admitted,
// tokens (prompt + completion) when a request finishes. A tenant over either limit gets 429 until the
// window has room again.
import { ApiError } from './errors.js';

const WINDOW_S = 60;

class MinuteWindow {
  private readonly buckets = new Float64Array(WINDOW_S);
  private readonly stamps = new Int32Array(WINDOW_S).fill(-1);

  add(nowS: number, amount: number): void {
    const i = nowS % WINDOW_S;
    if (this.stamps[i] !== nowS) {
      this.stamps[i] = nowS;
      this.buckets[i] = 0;
    }
    this.buckets[i]! += amount;
  }

  total(nowS: number): number {
    let sum = 0;
    for (let i = 0; i < WINDOW_S; i++) if (nowS - this.stamps[i]! < WINDOW_S) sum += this.buckets[i]!;
    return sum;
  }

  /** Seconds until the oldest counted bucket leaves the window. */
  retryAfter(nowS: number): number {
    let oldest = nowS;
    for (let i = 0; i < WINDOW_S; i++) {
      const s = this.stamps[i]!;
      if (nowS - s < WINDOW_S && this.buckets[i]! > 0) oldest = Math.min(oldest, s);
    }
    return Math.max(1, oldest + WINDOW_S - nowS);
  }
}

export interface Limits {
  rpm: number;
  tpm: number;
}

export class RateLimiter {
  private readonly requests = new Map<string, MinuteWindow>();
  private readonly tokens = new Map<string, MinuteWindow>();

  constructor(private readonly clock: () => number = () => Math.floor(Date.now() / 1000)) {}

  /** Admits a request or throws 429; `cost` requests are counted at once (callers count an HTTP request once, whatever its n). */
  admit(tenant: string, limits: Limits, cost = 1): void {
    const now = this.clock();
    const requests = window(this.requests, tenant);
    const tokens = window(this.tokens, tenant);
    if (requests.total(now) + cost > limits.rpm) {
      throw limited(`rate limit reached: ${limits.rpm} requests per minute`, requests.retryAfter(now));
    }
    if (tokens.total(now) >= limits.tpm) {
      throw limited(`rate limit reached: ${limits.tpm} tokens per minute`, tokens.retryAfter(now));
    }
    requests.add(now, cost);
  }

  recordTokens(tenant: string, count: number): void {
    window(this.tokens, tenant).add(this.clock(), count);
  }

  forget(tenant: string): void {
    this.requests.delete(tenant);
    this.tokens.delete(tenant);
  }
}

function window(map: Map<string, MinuteWindow>, tenant: string): MinuteWindow {
  let w = map.get(tenant);
  if (!w) map.set(tenant, (w = new MinuteWindow()));
  return w;
}

function limited(message: string, retryAfterS: number): ApiError {
  return new ApiError(429, 'rate_limit_error', message, 'rate_limit_exceeded', null, { 'retry-after': String(retryAfterS) });
}

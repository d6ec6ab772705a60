// Per-tenant rate limits over a sliding minute, in one-second buckets, keyed by tenant id (never reused).
// A request is admitted with its cost: its choices count as requests at once, and its most possible tokens
// (max_tokens per choice) are reserved, so requests running in parallel can never together overrun the
// tokens per minute. When it ends the reservation is settled to the tokens it really used; a request that
// failed by the gateway's own fault (5xx) is refunded entirely. A tenant over either limit gets 429 until the
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

  /** Takes back an amount added in second `atS`, if that second is still in the window. */
  remove(atS: number, amount: number): void {
    const i = atS % WINDOW_S;
    if (this.stamps[i] === atS) this.buckets[i] = Math.max(0, this.buckets[i]! - amount);
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

/** What one admitted request may spend. */
export interface Cost {
  /** Engine requests (prompts × n). */
  requests: number;
  /** Tokens reserved until the request ends. */
  tokens: number;
}

class TenantWindows {
  readonly requests = new MinuteWindow();
  readonly tokens = new MinuteWindow();
  /** Tokens reserved by requests still running. */
  reserved = 0;
}

/** An admitted request's hold on its tenant's limits; settled exactly once when the request ends. */
export interface Admission {
  /** The request ended having used `tokens` (prompt + completion). */
  settle(tokens: number): void;
  /** The request failed by the gateway's fault: neither its requests nor its tokens count. */
  refund(): void;
}

export const NO_ADMISSION: Admission = { settle: () => undefined, refund: () => undefined };

export class RateLimiter {
  private readonly tenants = new Map<number, TenantWindows>();

  constructor(private readonly clock: () => number = () => Math.floor(Date.now() / 1000)) {}

  /** Admits a request or throws 429. */
  admit(tenantId: number, limits: Limits, cost: Cost): Admission {
    const now = this.clock();
    const w = this.windowsOf(tenantId);
    if (w.requests.total(now) + cost.requests > limits.rpm) {
      throw limited(`rate limit reached: ${limits.rpm} requests per minute (a request with n choices counts n)`, w.requests.retryAfter(now));
    }
    if (cost.tokens > limits.tpm) {
      throw limited(
        `this request may use up to ${cost.tokens} tokens (max_tokens × choices), more than the limit of ${limits.tpm} tokens per minute; lower max_tokens`,
        WINDOW_S,
        'max_tokens',
      );
    }
    if (w.tokens.total(now) + w.reserved + cost.tokens > limits.tpm) {
      throw limited(`rate limit reached: ${limits.tpm} tokens per minute`, w.tokens.retryAfter(now));
    }
    w.requests.add(now, cost.requests);
    w.reserved += cost.tokens;
    let open = true;
    const release = () => {
      if (!open) return false;
      open = false;
      w.reserved -= cost.tokens;
      return true;
    };
    return {
      settle: (tokens) => {
        if (release() && tokens > 0) w.tokens.add(this.clock(), tokens);
      },
      refund: () => {
        if (release()) w.requests.remove(now, cost.requests);
      },
    };
  }

  forget(tenantId: number): void {
    this.tenants.delete(tenantId);
  }

  private windowsOf(tenantId: number): TenantWindows {
    let w = this.tenants.get(tenantId);
    if (!w) this.tenants.set(tenantId, (w = new TenantWindows()));
    return w;
  }
}

function limited(message: string, retryAfterS: number, param: string | null = null): ApiError {
  return new ApiError(429, 'rate_limit_error', message, 'rate_limit_exceeded', param, { 'retry-after': String(retryAfterS) });
}

import type { Clock } from './clock.js';

export type Decision = { ok: true } | { ok: false; retryAfterMs: number };

/** The one "allowed" answer, shared: limiters on hot paths (hearts) need not allocate one per call. */
export const ALLOWED: Decision = Object.freeze({ ok: true });

/**
 * Sliding-window log: at most `limit` events per key in any `windowMs`. A refused attempt does not count.
 * Memory is bounded by the number of active keys times `limit`; `sweep()` drops idle keys.
 */
export class SlidingWindowLimiter {
  readonly #events = new Map<string, number[]>();

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly clock: Clock,
  ) {}

  tryTake(key: string): Decision {
    const now = this.clock.now();
    const since = now - this.windowMs;
    let log = this.#events.get(key);
    if (!log) {
      log = [];
      this.#events.set(key, log);
    }
    let drop = 0;
    while (drop < log.length && log[drop]! <= since) drop++;
    if (drop > 0) log.splice(0, drop);
    if (log.length >= this.limit) {
      return { ok: false, retryAfterMs: Math.max(1, log[0]! + this.windowMs - now) };
    }
    log.push(now);
    return { ok: true };
  }

  /** Gives back the most recent take (used when a message turns out to be an idempotent retry). */
  refund(key: string): void {
    this.#events.get(key)?.pop();
  }

  sweep(): void {
    const since = this.clock.now() - this.windowMs;
    for (const [key, log] of this.#events) {
      if (log.length === 0 || log[log.length - 1]! <= since) this.#events.delete(key);
    }
  }

  get size(): number {
    return this.#events.size;
  }
}

/**
 * Token bucket: bursts up to `capacity`, refills at `perSecond`. Used for session hearts, where a person tapping
 * fast (about 10 taps a second) never notices it, while a script sending thousands a second is held back.
 */
export class TokenBucketLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly capacity: number,
    readonly perSecond: number,
    private readonly clock: Clock,
  ) {}

  tryTake(key: string, count = 1): Decision {
    const now = this.clock.now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.capacity, at: now };
    bucket.tokens = Math.min(this.capacity, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= count) {
      bucket.tokens -= count;
      return ALLOWED;
    }
    return { ok: false, retryAfterMs: Math.ceil(((count - bucket.tokens) / this.perSecond) * 1000) };
  }

  sweep(): void {
    const now = this.clock.now();
    for (const [key, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.capacity) this.#buckets.delete(key);
    }
  }

  get size(): number {
    return this.#buckets.size;
  }
}

/** One token bucket (what `TokenBucketLimiter` keeps per key), for limits that belong to one object: a socket. */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly capacity: number,
    readonly perSecond: number,
    private readonly clock: Clock,
  ) {
    this.#tokens = capacity;
    this.#at = clock.now();
  }

  tryTake(count = 1): Decision {
    const now = this.clock.now();
    this.#tokens = Math.min(this.capacity, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
    this.#at = now;
    if (this.#tokens >= count) {
      this.#tokens -= count;
      return ALLOWED;
    }
    return { ok: false, retryAfterMs: Math.ceil(((count - this.#tokens) / this.perSecond) * 1000) };
  }
}

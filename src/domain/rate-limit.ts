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
 * Extra capacity of a token bucket, as milliseconds of its refill: how long the frames read now may have waited
 * unread (the process's read lag, see `ReadLag`). A client whose frames were held back that long by a busy server
 * then arrive together is judged by the time they took to send, not by the instant they were read: its bucket may
 * hold the refill of that time on top of its burst. 0 (the default) is a plain token bucket.
 */
export type SlackMs = () => number;

const NO_SLACK: SlackMs = () => 0;

/** Refills `tokens` from `at` to `now` and caps them at `capacity` plus the slack's refill. */
function refill(
  tokens: number,
  at: number,
  now: number,
  capacity: number,
  perSecond: number,
  slackMs: SlackMs,
): number {
  const refilled = tokens + ((now - at) / 1000) * perSecond;
  if (refilled <= capacity) return refilled;
  return Math.min(refilled, capacity + (slackMs() / 1000) * perSecond);
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
    private readonly slackMs: SlackMs = NO_SLACK,
  ) {}

  tryTake(key: string, count = 1): Decision {
    const now = this.clock.now();
    // A new key was full when the frames read now may have been sent (see `SlackMs`).
    const bucket = this.#buckets.get(key) ?? { tokens: this.capacity, at: now - this.slackMs() };
    bucket.tokens = refill(bucket.tokens, bucket.at, now, this.capacity, this.perSecond, this.slackMs);
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
    private readonly slackMs: SlackMs = NO_SLACK,
  ) {
    this.#tokens = capacity;
    // Full when the frames read now may have been sent (see `SlackMs`).
    this.#at = clock.now() - slackMs();
  }

  tryTake(count = 1): Decision {
    const now = this.clock.now();
    this.#tokens = refill(this.#tokens, this.#at, now, this.capacity, this.perSecond, this.slackMs);
    this.#at = now;
    if (this.#tokens >= count) {
      this.#tokens -= count;
      return ALLOWED;
    }
    return { ok: false, retryAfterMs: Math.ceil(((count - this.#tokens) / this.perSecond) * 1000) };
  }
}

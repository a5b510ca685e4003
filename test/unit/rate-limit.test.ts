import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { SlidingWindowLimiter, TokenBucket, TokenBucketLimiter } from '../../src/domain/rate-limit.js';

describe('rate limits (clock injected)', () => {
  it('SlidingWindowLimiter: at most `limit` per window, retry_after until the oldest leaves it', () => {
    const clock = new ManualClock(0);
    const limiter = new SlidingWindowLimiter(10, 60_000, clock);
    for (let i = 0; i < 10; i++) {
      expect(limiter.tryTake('u').ok).toBe(true);
      clock.set(clock.now() + 1000);
    }
    // 10 s after the first, the 11th is refused until the first is a minute old.
    expect(limiter.tryTake('u')).toEqual({ ok: false, retryAfterMs: 50_000 });
    expect(limiter.tryTake('other').ok).toBe(true);
    clock.set(60_000);
    expect(limiter.tryTake('u').ok).toBe(true);
    expect(limiter.tryTake('u').ok).toBe(false);
  });

  it('TokenBucket and TokenBucketLimiter agree: a burst, then the refill rate, and the wait for the next token', () => {
    const clock = new ManualClock(0);
    const one = new TokenBucket(5, 2, clock);
    const keyed = new TokenBucketLimiter(5, 2, clock);
    const both = () => {
      const a = one.tryTake();
      expect(keyed.tryTake('k')).toEqual(a);
      return a;
    };
    for (let i = 0; i < 5; i++) expect(both().ok).toBe(true);
    expect(both()).toEqual({ ok: false, retryAfterMs: 500 });
    clock.set(250);
    expect(both()).toEqual({ ok: false, retryAfterMs: 250 });
    clock.set(1000);
    expect(both().ok).toBe(true);
    expect(both().ok).toBe(true);
    expect(both().ok).toBe(false);
    // Never more than the burst, however long the wait.
    clock.set(3_600_000);
    for (let i = 0; i < 5; i++) expect(both().ok).toBe(true);
    expect(both().ok).toBe(false);
  });
});

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

  it('with slack, frames read late and at once pass while they were sent within the rate; a flood still does not', () => {
    // The socket's bucket (30/s, burst 60): a client taps 11 a second, and a busy node reads 6 s of it at once.
    const clock = new ManualClock(0);
    let lagMs = 0;
    const plain = new TokenBucket(60, 30, clock);
    const slack = new TokenBucket(60, 30, clock, () => lagMs);
    const keyed = new TokenBucketLimiter(60, 30, clock, () => lagMs);
    clock.set(6_000);
    lagMs = 6_000;
    const taken = (take: () => { ok: boolean }, n: number) => {
      let ok = 0;
      for (let i = 0; i < n; i++) if (take().ok) ok++;
      return ok;
    };
    expect(taken(() => plain.tryTake(), 66)).toBe(60);
    expect(taken(() => slack.tryTake(), 66)).toBe(66);
    expect(taken(() => keyed.tryTake('u'), 66)).toBe(66);
    // A key first seen now was full when the lag began: its 66 pass too.
    expect(taken(() => keyed.tryTake('new'), 66)).toBe(66);
    // The slack is the refill of the lag, not more: 60 + 30 × 6 = 240 at most, whatever the client sent.
    expect(taken(() => keyed.tryTake('flood'), 1000)).toBe(240);
    // Once the node reads in time again, the burst is the cap again however long the wait.
    lagMs = 0;
    clock.set(3_600_000);
    expect(taken(() => slack.tryTake(), 100)).toBe(60);
  });
});

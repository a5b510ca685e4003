import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/domain/clock.js';
import { HEART_BURST, HEARTS_PER_SECOND, RedisLimits } from '../../src/realtime/limits.js';
import { redisAvailable, TEST_REDIS_URL, uniquePrefix } from '../support/redis.js';

const ready = await redisAvailable();
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe.skipIf(!ready)('RedisLimits and a node that reads late (real Redis)', () => {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  afterAll(() => redis.quit());

  it('hearts: Redis windows judge a node that reads in time; a node that reads late judges by its own buckets, which allow for the lag', async () => {
    let lagMs = 0;
    const limits = new RedisLimits(
      redis,
      { messagesPerMinute: 10, maxConnectionsPerUser: 5 },
      systemClock,
      'node-a',
      uniquePrefix(),
      quiet,
      () => {},
      () => lagMs,
    );
    const allowed = async (userId: string, n: number) => {
      let ok = 0;
      for (let i = 0; i < n; i++) if ((await limits.heart(1, userId)).ok) ok++;
      return ok;
    };
    // In time: Redis's fixed window of 2 s (40 hearts), shared by every node.
    const inTime = await allowed('alice', 100);
    expect(inTime).toBeGreaterThanOrEqual(HEARTS_PER_SECOND * 2);
    expect(inTime).toBeLessThanOrEqual(HEARTS_PER_SECOND * 4);
    // 5 s late: what the node read at once may have been sent over 5 s, so 50 + 20 × 5 pass (a little more
    // for the time the loop itself takes), and no more.
    lagMs = 5_000;
    const late = await allowed('bob', 300);
    expect(late).toBeGreaterThanOrEqual(HEART_BURST + HEARTS_PER_SECOND * 5);
    expect(late).toBeLessThan(HEART_BURST + HEARTS_PER_SECOND * 5 + 10);
    await limits.close();
  });
});

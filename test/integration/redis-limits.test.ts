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

  it('connections: a node that is no longer alive stops counting for a user over the cap at once (its tabs come back on another node), a live one keeps counting', async () => {
    const prefix = uniquePrefix();
    const node = (id: string) =>
      new RedisLimits(
        redis,
        { messagesPerMinute: 10, maxConnectionsPerUser: 5 },
        systemClock,
        id,
        prefix,
        quiet,
      );
    const a = node('node-a');
    const b = node('node-b');
    try {
      for (let i = 0; i < 3; i++) expect(await a.connection('carol'), `A ${i}`).not.toBeNull();
      expect(await b.connection('carol')).not.toBeNull();
      expect(await b.connection('carol')).not.toBeNull();
      // Five open: A is alive, so its three count and the sixth is refused.
      expect(await b.connection('carol')).toBeNull();
      // A dies without releasing its sockets (as kill -9 leaves them); its liveness goes with it.
      await a.close();
      const slot = await b.connection('carol');
      expect(slot, 'let in once the dead node stopped counting').not.toBeNull();
      expect(await redis.zcard(`${prefix}conns:carol`)).toBe(3);
      expect(await b.connection('carol')).not.toBeNull();
      expect(await b.connection('carol')).not.toBeNull();
      expect(await b.connection('carol'), 'the cap still holds').toBeNull();
    } finally {
      await b.close();
    }
  });
});

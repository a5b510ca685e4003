import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Log } from '../chat/chat-service.js';
import type { Clock } from '../domain/clock.js';
import {
  type Decision,
  type SlackMs,
  SlidingWindowLimiter,
  TokenBucketLimiter,
} from '../domain/rate-limit.js';
import { processReadLagMs } from './read-lag.js';

/** A taken message slot; `refund()` gives it back (an idempotent retry turned out to store nothing). */
export type MessageDecision = Decision & { refund(): void };

/** A connection slot of a user; release it when the socket closes. */
export interface ConnectionSlot {
  release(): void;
}

/** Per-user limits (SPEC §6): on one node in memory, across nodes in Redis. */
export interface Limits {
  message(sessionId: number, userId: string): Promise<MessageDecision>;
  heart(sessionId: number, userId: string): Promise<Decision>;
  /** `heart` answered at once, where the limiter lives in this process (undefined: ask `heart`). */
  heartNow?(sessionId: number, userId: string): Decision | undefined;
  like(sessionId: number, userId: string): Promise<Decision>;
  /** A connection slot, or null when the user already has the maximum. */
  connection(userId: string): Promise<ConnectionSlot | null>;
  close(): Promise<void>;
}

export interface LimitSettings {
  messagesPerMinute: number;
  maxConnectionsPerUser: number;
}

/** Session hearts: a burst of 50, then 20 a second, per user. A person tapping fast never reaches it. */
export const HEART_BURST = 50;
export const HEARTS_PER_SECOND = 20;
/** Message likes and unlikes: a burst of 30, then 10 a second, per user. */
export const LIKE_BURST = 30;
export const LIKES_PER_SECOND = 10;

const WINDOW_MS = 60_000;

/** A slot counted in a node's per-user map (an object, not a closure: one of these lives as long as each socket). */
class LocalSlot implements ConnectionSlot {
  #released = false;
  constructor(
    private readonly counts: Map<string, number>,
    private readonly userId: string,
  ) {}

  release(): void {
    if (this.#released) return;
    this.#released = true;
    const left = (this.counts.get(this.userId) ?? 1) - 1;
    if (left <= 0) this.counts.delete(this.userId);
    else this.counts.set(this.userId, left);
  }
}

/**
 * One node: exact sliding window for messages, token buckets for hearts and likes, a counter per user. The
 * buckets' slack (default: this process's read lag) keeps a node that reads late from refusing what a client sent
 * in time (see `ReadLag`).
 */
export class LocalLimits implements Limits {
  readonly #messages: SlidingWindowLimiter;
  readonly #hearts: TokenBucketLimiter;
  readonly #likes: TokenBucketLimiter;
  readonly #connections = new Map<string, number>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(
    private readonly settings: LimitSettings,
    clock: Clock,
    slackMs: SlackMs = processReadLagMs,
  ) {
    this.#messages = new SlidingWindowLimiter(settings.messagesPerMinute, WINDOW_MS, clock);
    this.#hearts = new TokenBucketLimiter(HEART_BURST, HEARTS_PER_SECOND, clock, slackMs);
    this.#likes = new TokenBucketLimiter(LIKE_BURST, LIKES_PER_SECOND, clock, slackMs);
    this.#sweeper = setInterval(() => {
      this.#messages.sweep();
      this.#hearts.sweep();
      this.#likes.sweep();
    }, 30_000);
    this.#sweeper.unref();
  }

  async message(sessionId: number, userId: string): Promise<MessageDecision> {
    return this.messageSync(sessionId, userId);
  }

  messageSync(sessionId: number, userId: string): MessageDecision {
    const key = `${sessionId}:${userId}`;
    const d = this.#messages.tryTake(key);
    return { ...d, refund: () => (d.ok ? this.#messages.refund(key) : undefined) };
  }

  async heart(sessionId: number, userId: string): Promise<Decision> {
    return this.heartNow(sessionId, userId);
  }

  heartNow(sessionId: number, userId: string): Decision {
    return this.#hearts.tryTake(`${sessionId}:${userId}`);
  }

  async like(sessionId: number, userId: string): Promise<Decision> {
    return this.#likes.tryTake(`${sessionId}:${userId}`);
  }

  async connection(userId: string): Promise<ConnectionSlot | null> {
    return this.connectionSync(userId);
  }

  connectionSync(userId: string): ConnectionSlot | null {
    const n = this.#connections.get(userId) ?? 0;
    if (n >= this.settings.maxConnectionsPerUser) return null;
    this.#connections.set(userId, n + 1);
    return new LocalSlot(this.#connections, userId);
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
  }
}

/** How long a node counts as alive after its last beat (ms), and how often it beats. */
const NODE_ALIVE_MS = 15_000;
const NODE_BEAT_MS = 5_000;

/**
 * Limits shared by all nodes. Messages: an exact sliding window kept as a sorted set per user and session
 * (add first, then count, take back when over: concurrent nodes can refuse together but never admit too many),
 * and this node's own window besides, which holds the limit on this node when Redis cannot (`message`).
 * Hearts and likes: rate-limiter-flexible's Redis limiter with an in-memory insurance limiter. Connections: a
 * sorted set per user of this node's sockets with an expiry each node refreshes, so a dead node's sockets stop
 * counting by themselves; and a user over the cap has the sockets of nodes no longer alive (`<prefix>node:<id>`,
 * kept for NODE_ALIVE_MS and refreshed every NODE_BEAT_MS) taken out at once, so that after a node is killed its
 * users' tabs are let back in on the others within seconds, not after the sockets' own minute. While Redis is
 * away every limit falls back to this node's own, and says so. While this node reads its sockets late (`lagMs`
 * above 0, see `ReadLag`), hearts and likes are judged by its own buckets, which allow for the lag, and cost no
 * Redis round trip: Redis's fixed windows would refuse what a client sent in time and the node read at once.
 */
export class RedisLimits implements Limits {
  readonly #local: LocalLimits;
  readonly #lagMs: SlackMs;
  readonly #hearts: RateLimiterRedis;
  readonly #likes: RateLimiterRedis;
  /** This node's open connection members, refreshed in Redis while they live. */
  readonly #mine = new Map<string, Set<string>>();
  readonly #timer: NodeJS.Timeout;
  readonly #beatTimer: NodeJS.Timeout;
  #nextMember = 0;
  #fallingBack = false;

  constructor(
    private readonly redis: Redis,
    private readonly settings: LimitSettings,
    clock: Clock,
    private readonly nodeId: string,
    private readonly prefix: string,
    private readonly log: Log,
    private readonly onFallback: (what: string) => void = () => {},
    lagMs: SlackMs = processReadLagMs,
  ) {
    this.#lagMs = lagMs;
    this.#local = new LocalLimits(settings, clock, lagMs);
    const limiter = (name: string, points: number, duration: number) =>
      new RateLimiterRedis({
        storeClient: redis,
        keyPrefix: `${prefix}rl:${name}`,
        points,
        duration,
        insuranceLimiter: new RateLimiterMemory({ keyPrefix: `local:${name}`, points, duration }),
      });
    // Fixed windows of 2 s approximate the token buckets: the same average rate and about the same burst.
    this.#hearts = limiter('heart', HEARTS_PER_SECOND * 2, 2);
    this.#likes = limiter('like', LIKES_PER_SECOND * 2, 2);
    this.#timer = setInterval(() => void this.#refreshConnections(), 20_000);
    this.#timer.unref();
    void this.#beat();
    this.#beatTimer = setInterval(() => void this.#beat(), NODE_BEAT_MS);
    this.#beatTimer.unref();
  }

  #aliveKey(nodeId: string): string {
    return `${this.prefix}node:${nodeId}`;
  }

  /** This node is alive (`#purgeDead`). */
  async #beat(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    await this.redis.set(this.#aliveKey(this.nodeId), '1', 'PX', NODE_ALIVE_MS).catch(() => {});
  }

  /** Takes the sockets of nodes that are no longer alive out of a user's set; how many it took. */
  async #purgeDead(key: string): Promise<number> {
    const members = await this.redis.zrange(key, 0, -1);
    const nodeOf = (member: string) => member.slice(0, member.lastIndexOf(':'));
    const others = [...new Set(members.map(nodeOf))].filter((n) => n !== this.nodeId);
    if (others.length === 0) return 0;
    const alive = await this.redis.mget(others.map((n) => this.#aliveKey(n)));
    const dead = new Set(others.filter((_, i) => alive[i] === null));
    const gone = members.filter((m) => dead.has(nodeOf(m)));
    if (gone.length > 0) await this.redis.zrem(key, ...gone);
    return gone.length;
  }

  #fallback(what: string, err: unknown): void {
    this.onFallback(what);
    if (!this.#fallingBack) {
      this.#fallingBack = true;
      this.log.warn({ err, what }, 'redis unreachable: limits fall back to this node only');
    }
  }

  #recovered(): void {
    if (this.#fallingBack) {
      this.#fallingBack = false;
      this.log.info({}, 'redis reachable again: limits are shared across nodes');
    }
  }

  /**
   * A message takes a slot in this node's own window first, always, and then one in the shared window: the node
   * remembers what it let through whatever Redis does (answers, goes away, comes back empty after a restart), so
   * it never lets one user through more than the limit itself; the shared window holds the limit across nodes.
   * A refusal by either gives the other's slot back, and so does a refund.
   */
  async message(sessionId: number, userId: string): Promise<MessageDecision> {
    const local = this.#local.messageSync(sessionId, userId);
    if (!local.ok) return local;
    if (this.redis.status !== 'ready') {
      this.#fallback('message', new Error(`redis ${this.redis.status}`));
      return local;
    }
    const key = `${this.prefix}rl:msg:${sessionId}:${userId}`;
    const now = Date.now();
    const member = `${now}:${this.nodeId}:${this.#nextMember++}`;
    let res: Array<[Error | null, unknown]>;
    try {
      res =
        (await this.redis
          .multi()
          .zremrangebyscore(key, '-inf', now - WINDOW_MS)
          .zadd(key, now, member)
          .zcard(key)
          .zrange(key, 0, 0, 'WITHSCORES')
          .pexpire(key, WINDOW_MS)
          .exec()) ?? [];
    } catch (err) {
      this.#fallback('message', err);
      return local;
    }
    this.#recovered();
    const count = Number(res[2]?.[1] ?? 0);
    const shared = () => void this.redis.zrem(key, member).catch(() => {});
    if (count > this.settings.messagesPerMinute) {
      shared();
      local.refund();
      const oldest = Number((res[3]?.[1] as string[] | undefined)?.[1] ?? now);
      return { ok: false, retryAfterMs: Math.max(1, oldest + WINDOW_MS - now), refund: () => {} };
    }
    return {
      ok: true,
      refund: () => {
        shared();
        local.refund();
      },
    };
  }

  heart(sessionId: number, userId: string): Promise<Decision> {
    if (this.#lagMs() > 0) return this.#local.heart(sessionId, userId);
    return this.#consume(this.#hearts, `${sessionId}:${userId}`);
  }

  like(sessionId: number, userId: string): Promise<Decision> {
    if (this.#lagMs() > 0) return this.#local.like(sessionId, userId);
    return this.#consume(this.#likes, `${sessionId}:${userId}`);
  }

  async #consume(limiter: RateLimiterRedis, key: string): Promise<Decision> {
    try {
      await limiter.consume(key, 1);
      return { ok: true };
    } catch (res) {
      if (res instanceof RateLimiterRes) return { ok: false, retryAfterMs: Math.max(1, res.msBeforeNext) };
      throw res;
    }
  }

  async connection(userId: string): Promise<ConnectionSlot | null> {
    const member = `${this.nodeId}:${this.#nextMember++}`;
    const key = `${this.prefix}conns:${userId}`;
    const local = this.#local.connectionSync(userId);
    if (!local) return null;
    if (this.redis.status === 'ready') {
      try {
        const now = Date.now();
        const res =
          (await this.redis
            .multi()
            .zremrangebyscore(key, '-inf', now)
            .zadd(key, now + 60_000, member)
            .zcard(key)
            .pexpire(key, 60_000)
            .exec()) ?? [];
        this.#recovered();
        let open = Number(res[2]?.[1] ?? 0);
        if (open > this.settings.maxConnectionsPerUser && (await this.#purgeDead(key)) > 0)
          open = await this.redis.zcard(key);
        if (open > this.settings.maxConnectionsPerUser) {
          await this.redis.zrem(key, member).catch(() => {});
          local.release();
          return null;
        }
      } catch (err) {
        this.#fallback('connection', err);
      }
    } else {
      this.#fallback('connection', new Error(`redis ${this.redis.status}`));
    }
    const mine = this.#mine.get(userId) ?? new Set();
    mine.add(member);
    this.#mine.set(userId, mine);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        local.release();
        mine.delete(member);
        if (mine.size === 0) this.#mine.delete(userId);
        this.redis.zrem(key, member).catch(() => {});
      },
    };
  }

  async #refreshConnections(): Promise<void> {
    if (this.redis.status !== 'ready' || this.#mine.size === 0) return;
    const until = Date.now() + 60_000;
    const m = this.redis.multi();
    for (const [userId, members] of this.#mine) {
      const key = `${this.prefix}conns:${userId}`;
      for (const member of members) m.zadd(key, until, member);
      m.pexpire(key, 60_000);
    }
    await m.exec().catch(() => {});
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    clearInterval(this.#beatTimer);
    if (this.redis.status === 'ready') await this.redis.del(this.#aliveKey(this.nodeId)).catch(() => {});
    await this.#local.close();
  }
}

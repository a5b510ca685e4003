import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type LocalViewers,
  RedisPresence,
  type RedisPresenceOptions,
  RING_INTERVAL_MS,
} from '../../src/realtime/presence.js';
import { PrivateRedis } from '../support/redis.js';

const serverInstalled = !spawnSync('redis-server', ['--version']).error;
if (!serverInstalled && process.env.CI === 'true') throw new Error('redis-server is required under CI=true');

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const SESSION = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One node as RedisPresence sees it: its own viewers (the hub's rooms), its own connection to Redis. */
class FakeNode implements LocalViewers {
  readonly rooms = new Map<number, Set<string>>();
  presence!: RedisPresence;
  /** Cut off from the cluster's bus (a dead node hears nothing). */
  deaf = false;

  constructor(readonly redis: Redis) {}

  sessions(): number[] {
    return [...this.rooms.keys()];
  }
  users(sessionId: number): string[] {
    return [...(this.rooms.get(sessionId) ?? [])];
  }
  count(sessionId: number): number {
    return this.rooms.get(sessionId)?.size ?? 0;
  }

  join(userId: string, sessionId = SESSION): void {
    const room = this.rooms.get(sessionId) ?? new Set<string>();
    this.rooms.set(sessionId, room);
    if (room.has(userId)) return;
    room.add(userId);
    this.presence.changed(sessionId, userId, true);
  }

  leave(userId: string, sessionId = SESSION): void {
    const room = this.rooms.get(sessionId);
    if (!room?.delete(userId)) return;
    if (room.size === 0) this.rooms.delete(sessionId);
    this.presence.changed(sessionId, userId, false);
  }
}

/** Nodes on one Redis, their rings delivered to every node that hears the bus (itself included, as RedisBus does). */
function cluster(url: string, n: number, options: Partial<RedisPresenceOptions> = {}) {
  const prefix = 'presence-test:';
  const nodes: FakeNode[] = [];
  const stats = { rings: 0 };
  for (let i = 0; i < n; i++) {
    const redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    redis.on('error', () => {});
    const node = new FakeNode(redis);
    node.presence = new RedisPresence(redis, node, `node-${i}`, prefix, quiet, {
      ...options,
      ring: (sessionId) => {
        stats.rings++;
        for (const other of nodes) if (!other.deaf) other.presence.recount(sessionId);
      },
    });
    nodes.push(node);
  }
  const truth = (sessionId = SESSION) =>
    new Set(nodes.flatMap((x) => (x.deaf ? [] : x.users(sessionId)))).size;
  return { nodes, stats, truth };
}

/** Waits until `check` holds, polling; fails naming `what` after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await sleep(25);
  }
}

/** `INFO commandstats` as command → calls. */
async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const calls = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

/** Commands whose cost grows with the number of viewers (a union, or reading a whole set or hash). */
const WHOLE_SET_COMMANDS = [
  'sunionstore',
  'sunion',
  'sinter',
  'sinterstore',
  'smembers',
  'hkeys',
  'hgetall',
  'hvals',
];

describe.skipIf(!serverInstalled)('RedisPresence: viewers counted across nodes (real Redis)', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  const open: FakeNode[] = [];

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  });
  afterEach(async () => {
    for (const node of open.splice(0)) {
      await node.presence.close().catch(() => {});
      node.redis.disconnect();
    }
    await admin.flushall();
  });
  afterAll(async () => {
    admin.disconnect();
    await redis?.kill();
  });

  const start = (n: number, options: Partial<RedisPresenceOptions> = {}) => {
    const c = cluster(redis.url, n, options);
    open.push(...c.nodes);
    return c;
  };
  /** What the session's counts hash holds: distinct users, and the total of their counts. */
  const inRedis = async () => {
    const hash = await admin.hgetall(`presence-test:viewer-counts:${SESSION}`);
    const users = Object.keys(hash).filter((f) => f.startsWith('u:'));
    const sum = users.reduce((n, f) => n + Number(hash[f]), 0);
    return { users: users.length, sum, total: Number(hash['#total']) };
  };
  /** What it should hold: each user once, counted once per node that has them. */
  const settled = (c: ReturnType<typeof start>) => {
    const sum = c.nodes.reduce((n, x) => n + (x.deaf ? 0 : x.count(SESSION)), 0);
    return { users: c.truth(), sum, total: sum };
  };
  const exact = (c: ReturnType<typeof start>) => () =>
    c.nodes.every((x) => x.deaf || x.presence.count(SESSION) === c.truth());
  const counts = (c: ReturnType<typeof start>) => () =>
    `truth ${c.truth()}, nodes count ${c.nodes.map((x) => x.presence.count(SESSION)).join(' ')}`;

  it('a churn of 200 joins and leaves over 2 s on four nodes costs Redis a handful of whole-set reads at most, not one per change per node, and every node ends on the exact count', async () => {
    const c = start(4);
    // 300 viewers a node, each node sharing 100 with the next (tabs on two nodes count once): 900 distinct.
    for (const [i, node] of c.nodes.entries()) for (let u = 0; u < 300; u++) node.join(`u${i * 200 + u}`);
    await until(exact(c), 10_000, counts(c));
    expect(c.truth()).toBe(900);
    await admin.config('RESETSTAT');
    c.stats.rings = 0;
    const started = performance.now();
    for (let j = 0; j < 200; j++) {
      const node = c.nodes[j % 4]!;
      if (j % 2 === 0) {
        // A newcomer, or (every third) a viewer of the next node opening a tab here.
        node.join(j % 3 === 0 ? `u${((j % 4) + 1) * 200 + j}` : `new${j}`);
      } else {
        node.leave(node.users(SESSION)[(j * 7) % node.count(SESSION)]!);
      }
      await sleep(10);
    }
    await until(exact(c), 10_000, counts(c));
    // Whatever was scheduled by the churn has run by now.
    await sleep(1_000);
    const calls = await commandCalls(admin);
    const wholeSet = WHOLE_SET_COMMANDS.map((cmd) => [cmd, calls.get(cmd) ?? 0] as const).filter(
      ([, n]) => n > 0,
    );
    expect(
      wholeSet.reduce((sum, [, n]) => sum + n, 0),
      `whole-set reads: ${wholeSet.map(([cmd, n]) => `${cmd} ${n}`).join(', ') || 'none'}`,
    ).toBeLessThanOrEqual(4);
    // The other nodes hear of changes a few times a second at most, not once per change (200 before).
    const intervals = (performance.now() - started) / RING_INTERVAL_MS;
    expect(c.stats.rings).toBeLessThanOrEqual(4 * (Math.ceil(intervals) + 1));
    expect(exact(c)(), counts(c)()).toBe(true);
    expect(await inRedis()).toEqual(settled(c));
  });
  it('a node that dies stops counting within its expiry: its viewers leave the count on the others, and elsewhere() and members() stop seeing them', async () => {
    const ttlMs = 1_500;
    const c = start(3, { ttlMs, beatMs: 250 });
    const [a, b, dead] = c.nodes as [FakeNode, FakeNode, FakeNode];
    for (let u = 0; u < 50; u++) a.join(`a${u}`);
    for (let u = 0; u < 50; u++) b.join(`b${u}`);
    // 30 only on the node that dies, 20 also on node A.
    for (let u = 0; u < 30; u++) dead.join(`d${u}`);
    for (let u = 0; u < 20; u++) dead.join(`a${u}`);
    await until(exact(c), 10_000, counts(c));
    expect(c.truth()).toBe(130);
    expect(await b.presence.elsewhere(SESSION, 'd0')).toBe(true);
    // Killed: no clean stop, no more writes, deaf to the bus.
    dead.deaf = true;
    dead.redis.disconnect();
    // Within its expiry (and the ring that follows), with room for a loaded test machine.
    await until(exact(c), ttlMs + 3_000, counts(c));
    expect(c.truth()).toBe(100);
    expect(await b.presence.elsewhere(SESSION, 'd0')).toBe(false);
    expect(await b.presence.elsewhere(SESSION, 'a0')).toBe(true);
    const members = await b.presence.members(SESSION);
    expect(members?.size).toBe(100);
    expect(members?.has('d0')).toBe(false);
  });

  it('a node taken out while alive (it stalled past the expiry) writes its viewers afresh and counts again', async () => {
    const c = start(2, { ttlMs: 1_500, beatMs: 250 });
    const [a, b] = c.nodes as [FakeNode, FakeNode];
    for (let u = 0; u < 40; u++) a.join(`a${u}`);
    for (let u = 0; u < 40; u++) b.join(`b${u}`);
    await until(exact(c), 10_000, counts(c));
    // What another node sees of a node that has not written for a long time.
    await admin.zadd(`presence-test:viewer-nodes:${SESSION}`, 0, 'node-1');
    await until(() => a.presence.count(SESSION) === 40, 5_000, counts(c));
    await until(exact(c), 5_000, counts(c));
    expect(c.truth()).toBe(80);
  });

  it('after a Redis restart (every key lost) the nodes write their viewers afresh: a join right after it does not leave the others out', async () => {
    const c = start(2, { ttlMs: 3_000, beatMs: 500 });
    const [a, b] = c.nodes as [FakeNode, FakeNode];
    for (let u = 0; u < 40; u++) a.join(`a${u}`);
    for (let u = 0; u < 40; u++) b.join(`shared${u}`);
    for (let u = 0; u < 10; u++) a.join(`shared${u}`);
    await until(exact(c), 10_000, counts(c));
    expect(c.truth()).toBe(80);
    await redis.kill();
    await redis.start();
    await until(
      () => c.nodes.every((x) => x.redis.status === 'ready'),
      10_000,
      () => 'reconnected',
    );
    a.join('newcomer');
    await until(exact(c), 10_000, counts(c));
    expect(c.truth()).toBe(81);
    expect(await inRedis()).toEqual(settled(c));
  });

  it('counts that no longer add up (the hash lost, as an eviction would) are counted again from the sets', async () => {
    const c = start(2, { ttlMs: 3_000, beatMs: 500 });
    const [a, b] = c.nodes as [FakeNode, FakeNode];
    for (let u = 0; u < 30; u++) a.join(`u${u}`);
    for (let u = 20; u < 50; u++) b.join(`u${u}`);
    await until(exact(c), 10_000, counts(c));
    await admin.del(`presence-test:viewer-counts:${SESSION}`);
    b.join('late');
    await until(exact(c), 5_000, counts(c));
    expect(c.truth()).toBe(51);
    expect(await inRedis()).toEqual(settled(c));
  });

  it('a viewer who leaves while their node is cut off from Redis stops counting once it is back; one who came meanwhile counts', async () => {
    const c = start(2, { ttlMs: 3_000, beatMs: 500 });
    const [a, b] = c.nodes as [FakeNode, FakeNode];
    for (let u = 0; u < 10; u++) a.join(`a${u}`);
    for (let u = 0; u < 10; u++) b.join(`b${u}`);
    await until(exact(c), 10_000, counts(c));
    b.redis.disconnect();
    await until(
      () => b.redis.status !== 'ready',
      5_000,
      () => 'cut off',
    );
    b.leave('b0');
    b.leave('b1');
    b.join('b-new');
    // Meanwhile node B counts what it sees: its own viewers.
    expect(b.presence.count(SESSION)).toBe(9);
    await b.redis.connect();
    await until(exact(c), 5_000, counts(c));
    expect(c.truth()).toBe(19);
    expect((await a.presence.members(SESSION))?.has('b0')).toBe(false);
  });

  it('a user with tabs on two nodes counts once and is elsewhere until both are gone; a clean stop takes a node’s viewers out at once', async () => {
    const c = start(2);
    const [a, b] = c.nodes as [FakeNode, FakeNode];
    a.join('both');
    b.join('both');
    b.join('only-b');
    await until(exact(c), 10_000, counts(c));
    expect(c.truth()).toBe(2);
    a.leave('both');
    expect(await a.presence.elsewhere(SESSION, 'both')).toBe(true);
    await until(exact(c), 5_000, counts(c));
    expect(a.presence.count(SESSION)).toBe(2);
    b.leave('both');
    expect(await b.presence.elsewhere(SESSION, 'both')).toBe(false);
    await until(exact(c), 5_000, counts(c));
    expect(c.truth()).toBe(1);
    // B stops cleanly (SIGTERM): A hears at once, not after the expiry.
    await b.presence.close();
    b.deaf = true;
    await until(() => a.presence.count(SESSION) === 0, 2_000, counts(c));
  });
});

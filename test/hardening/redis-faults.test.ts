import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { createFreshDatabase, postgresAvailable } from '../support/postgres.js';
import { PrivateRedis, redisAvailable, uniquePrefix } from '../support/redis.js';
import {
  answerTo,
  expectNoSecretsLogged,
  type Node,
  type NodeOptions,
  sleep,
  startNode,
  waitFor,
  within,
} from './support.js';

// Redis faults other than a clean outage: a Redis that hangs instead of closing, subscriptions asked for while it
// is away, and what the limits remember across an outage. Each node runs on a private redis-server the test stops
// (SIGSTOP), kills and starts again; real PostgreSQL, real sockets, nothing mocked.

const ready = (await postgresAvailable()) && (await redisAvailable());

const cleanups: Array<() => Promise<void> | void> = [];
const later = (fn: () => Promise<void> | void) => cleanups.push(fn);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  expectNoSecretsLogged();
});

/**
 * Nodes of one cluster on a private Redis: one PostgreSQL database, one key prefix, one data directory (dev
 * signing key). `start()` starts another node of it, whenever the test likes (with Redis down, say).
 */
async function privateCluster(env: Record<string, string> = {}, options: Pick<NodeOptions, 'clock'> = {}) {
  const redis = await PrivateRedis.start();
  const db = await createFreshDatabase('drawchat_hard_redis');
  const dir = mkdtempSync(join(tmpdir(), 'drawchat-redis-faults-'));
  const prefix = uniquePrefix();
  const nodes: Node[] = [];
  // Cleanups run last first: the nodes close while Redis still runs (and answers), then Redis goes, then the rest.
  later(() => rmSync(dir, { recursive: true, force: true }));
  later(() => db.drop());
  later(() => redis.kill());
  later(async () => {
    // A test that failed with Redis paused: let it answer, so that the nodes close as they would.
    try {
      redis.resume();
    } catch {}
    await Promise.all(nodes.map((n) => n.close()));
  });
  const shared = {
    DATABASE_URL: db.url,
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: prefix,
    LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000000',
    LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '1000000',
    LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '1000',
    ...env,
  };
  return {
    redis,
    prefix,
    async start(): Promise<Node> {
      const n = await startNode({ env: shared, dataDir: dir, clock: options.clock });
      nodes.push(n);
      return n;
    },
    /** How many connections are subscribed to a session's channel (PUBSUB NUMSUB), asked of the private Redis. */
    async subscribers(sessionId: number): Promise<number> {
      const res = (await redis.ask((c) => c.pubsub('NUMSUB', `${prefix}session:${sessionId}`))) as [
        string,
        number,
      ];
      return Number(res[1]);
    },
  };
}

async function readiness(n: Node): Promise<{ status: number; body: any }> {
  return n.request('GET', '/readyz');
}

describe.skipIf(!ready)('Redis faults', () => {
  it('[H-REDIS-01] a Redis that hangs (SIGSTOP) instead of closing: messages, handshakes and hearts are answered within seconds on the limits of the node, /readyz says degraded; once it answers again, the other node’s news arrives through the bus again', {
    timeout: 90_000,
  }, async () => {
    const c = await privateCluster();
    const a = await c.start();
    const b = await c.start();
    const ta = await a.token('hang-a');
    const tb = await b.token('hang-b');
    const sid = await a.sessionId(ta);
    const va = await a.connect(sid, ta);
    await b.connect(sid, tb);
    expect((await readiness(a)).status).toBe(200);
    await waitFor(async () => (await c.subscribers(sid)) === 2, 10_000, 'both nodes subscribed');

    c.redis.pause();
    const pausedAt = Date.now();
    // Each of these waited as long as the pause (for ever, for a Redis that never comes back).
    va.send({ type: 'message', message: 'while redis hangs', client_msg_id: 'hang-1' });
    const answer = await answerTo(va, 'hang-1', 0, 4_000);
    expect(answer.type).toBe('new_message');
    const joiner = await within(
      a.connect(sid, await a.token('hang-joiner')),
      4_000,
      'a handshake while Redis hangs',
    );
    expect(joiner.init!.session.id).toBe(sid);
    const heart = await within(
      a.request('POST', '/live-chat/like', { token: ta, body: {} }),
      4_000,
      'a heart over HTTP while Redis hangs',
    );
    expect(heart.status).toBe(200);
    const sent = await within(
      a.request('POST', '/live-chat/messages', {
        token: ta,
        body: { message: 'over http while redis hangs' },
      }),
      4_000,
      'a message over HTTP while Redis hangs',
    );
    expect(sent.status).toBe(201);
    // Readiness says what a cleanly stopped Redis makes it say, within seconds of the hang.
    await waitFor(
      async () => (await readiness(a)).body.status === 'degraded',
      Math.max(0, pausedAt + 5_000 - Date.now()),
      '/readyz degraded on node A while Redis hangs',
    );
    const degraded = await readiness(a);
    expect(degraded.status).toBe(503);
    expect(degraded.body.checks).toMatchObject({ database: 'ok' });
    expect(degraded.body.checks.redis).toMatch(/^unreachable/);

    c.redis.resume();
    for (const [label, n] of [
      ['A', a],
      ['B', b],
    ] as const) {
      await waitFor(async () => (await readiness(n)).status === 200, 15_000, `node ${label} ready again`);
    }
    await waitFor(async () => (await c.subscribers(sid)) === 2, 10_000, 'both nodes subscribed again');
    // News from B through the bus: a message, and a heart (which no database poll would bring within 30 s).
    const fromB = await b.request('POST', '/live-chat/messages', {
      token: tb,
      body: { message: 'from B after' },
    });
    expect(fromB.status).toBe(201);
    await va.next('new_message', (e) => e.message.id === fromB.body.id, 5_000);
    const liked = await b.request('POST', '/live-chat/like', { token: tb, body: {} });
    expect(liked.status).toBe(200);
    await va.count('session_like_update', 'total_likes', (n) => n >= liked.body.total_likes, 3_000);
  });

  it('[H-REDIS-02] an event loop held up for seconds while Redis answers is not taken for a Redis that hangs: no connection is dropped', {
    timeout: 60_000,
  }, async () => {
    const c = await privateCluster();
    const a = await c.start();
    const ta = await a.token('late-loop');
    const sid = await a.sessionId(ta);
    await a.connect(sid, ta);
    await waitFor(async () => (await c.subscribers(sid)) === 1, 10_000, 'the node subscribed');
    await sleep(700);
    // The node's event loop is this one: nothing runs while it is held.
    const hold = (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {}
    };
    await new Promise<void>((resolve) => {
      // A second hold, due during the first, runs right after the watchdog's tick that is overdue by then too
      // (earlier timers first): the PING that tick sends is answered at once but read only after this hold, when
      // its command timeout has fired and the next tick finds it 2.6 s old.
      setTimeout(() => {
        hold(2_600);
        resolve();
      }, 2_000);
      hold(2_600);
    });
    await sleep(1_500);
    expect(a.logs.join('')).not.toContain('redis stopped answering');
    expect((await readiness(a)).status).toBe(200);
  });
  it('[H-REDIS-03] a node started while Redis is down subscribes to its session once Redis is back: it is counted on the channel within seconds and a heart from another node reaches its viewer through the bus', {
    timeout: 60_000,
  }, async () => {
    const c = await privateCluster();
    const a = await c.start();
    const ta = await a.token('deaf-a');
    const sid = await a.sessionId(ta);
    await a.connect(sid, ta);
    await waitFor(async () => (await c.subscribers(sid)) === 1, 10_000, 'node A subscribed');

    await c.redis.kill();
    const b = await c.start();
    const tb = await b.token('deaf-b');
    const vb = await b.connect(sid, tb);
    // Long enough for a SUBSCRIBE queued at start to be given up on (ioredis: after two failed reconnects).
    await sleep(1_500);
    await c.redis.start();
    // Redis starts empty: every subscription on it is one made since.
    let numsub = 0;
    await waitFor(
      async () => {
        numsub = await c.subscribers(sid);
        return numsub === 2;
      },
      10_000,
      () => `both nodes subscribed (PUBSUB NUMSUB ${numsub})`,
    );
    for (const n of [a, b]) await waitFor(async () => (await readiness(n)).status === 200, 10_000, 'ready');
    // Hearts come to another node through the bus only (else with the re-read every 30 s).
    const liked = await a.request('POST', '/live-chat/like', { token: ta, body: {} });
    expect(liked.status).toBe(200);
    await vb.count('session_like_update', 'total_likes', (n) => n >= liked.body.total_likes, 3_000);
  });

  it('[H-REDIS-04] a window switch while Redis is down: once it is back both nodes are on the new session’s channel and off the old one, and a heart on one reaches the other’s viewer', {
    timeout: 60_000,
  }, async () => {
    const hour = 3_600_000;
    // Five past the hour: the session of the draw at the hour (hourly draws, windows split at half past).
    const clock = new ManualClock(Math.floor(Date.now() / hour) * hour + 5 * 60_000);
    const c = await privateCluster({}, { clock });
    const a = await c.start();
    const b = await c.start();
    const ta = await a.token('switch-a');
    const tb = await b.token('switch-b');
    const first = await a.sessionId(ta);
    await waitFor(async () => (await c.subscribers(first)) === 2, 10_000, 'both nodes on the first session');

    await c.redis.kill();
    clock.advance(30 * 60_000);
    let second = 0;
    await waitFor(
      async () => {
        const ids = await Promise.all([a.sessionId(ta), b.sessionId(tb)]);
        second = ids[0];
        return ids[0] !== first && ids[1] === ids[0];
      },
      15_000,
      'both nodes on the next session',
    );
    await sleep(1_500);
    await c.redis.start();
    const numsub = { new: 0, old: 0 };
    await waitFor(
      async () => {
        numsub.new = await c.subscribers(second);
        numsub.old = await c.subscribers(first);
        return numsub.new === 2 && numsub.old === 0;
      },
      10_000,
      () => `subscriptions follow the window (PUBSUB NUMSUB new session ${numsub.new}, old ${numsub.old})`,
    );
    for (const n of [a, b]) await waitFor(async () => (await readiness(n)).status === 200, 10_000, 'ready');
    const vb = await b.connect(second, tb);
    const liked = await a.request('POST', '/live-chat/like', { token: ta, body: {} });
    expect(liked.status).toBe(200);
    await vb.count('session_like_update', 'total_likes', (n) => n >= liked.body.total_likes, 3_000);
  });
  it('[H-REDIS-05] a node never lets one user through more than the message limit, whatever Redis does: 10 messages with Redis up, then the 11th with Redis gone is refused (WebSocket and HTTP), and so is the next once Redis is back empty; none of them is stored', {
    timeout: 60_000,
  }, async () => {
    const c = await privateCluster({ LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '10' });
    const a = await c.start();
    const t = await a.token('limit-memory');
    const sid = await a.sessionId(t);
    const v = await a.connect(sid, t);
    for (let i = 0; i < 10; i++) {
      v.send({ type: 'message', message: `m${i}`, client_msg_id: `lm-${i}` });
      expect((await answerTo(v, `lm-${i}`)).type).toBe('new_message');
    }
    const refused = async (cmid: string, label: string) => {
      v.send({ type: 'message', message: cmid, client_msg_id: cmid });
      expect(await answerTo(v, cmid), label).toMatchObject({ type: 'error', code: 'rate_limited' });
      const http = await a.request('POST', '/live-chat/messages', {
        token: t,
        body: { message: `${cmid} over http` },
      });
      expect(http.status, `${label}, over HTTP`).toBe(429);
    };

    await c.redis.kill();
    await refused('lm-redis-gone', 'the 11th with Redis gone');
    await c.redis.start();
    await waitFor(async () => (await readiness(a)).status === 200, 10_000, 'Redis back');
    await refused('lm-redis-empty', 'the 11th with Redis back and empty');

    const history = await a.request('GET', `/live-chat/messages?session_id=${sid}`, { token: t });
    expect(history.body.messages.map((m: any) => m.message)).toEqual(
      Array.from({ length: 10 }, (_, i) => `m${i}`),
    );
  });
});

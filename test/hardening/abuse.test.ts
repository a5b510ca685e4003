import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MAX_RESUME_MESSAGES } from '../../src/protocol/messages.js';
import type { KyselyChatStore } from '../../src/store/kysely-store.js';
import { redisAvailable, TEST_REDIS_URL, uniquePrefix } from '../support/redis.js';
import { TestClient } from '../support/ws-client.js';
import {
  devTokens,
  expectNoSecretsLogged,
  killHard,
  metric,
  type Node,
  type NodeOptions,
  RawWs,
  seenIds,
  sleep,
  spawnNode,
  startNode,
  waitFor,
  within,
} from './support.js';

// Issue 6, abuse: floods of messages, sockets, handshakes and bytes, and clients that stop reading or vanish.
// Each case measures what the abuser got and what everyone else felt.

const redisReady = await redisAvailable();
const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<void> | void> = [];

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  expectNoSecretsLogged();
});

// The slowloris of H-ABUSE-08 starts with the file (it takes 10 s to play out) and is checked at its end.
let slowloris: {
  node: Node;
  sid: number;
  token: string;
  started: number;
  drips: Array<Promise<number>>;
  answers: string[];
};
beforeAll(async () => {
  const n = await node();
  const token = await n.token('patient');
  const sid = await n.sessionId(token);
  const port = Number(new URL(n.url).port);
  const request = `GET /live-chat/ws/${sid}?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n`;
  const started = Date.now();
  const answers: string[] = [];
  const drips = Array.from({ length: 20 }, (_, k) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    answers[k] = '';
    s.on('data', (d: Buffer) => {
      answers[k] += d.toString();
    });
    let i = 0;
    const drip = () => {
      if (!s.destroyed && i < request.length) s.write(request[i++]!);
    };
    // One byte now, then one a second (the 10 s pace changes nothing: the bound is the header
    // timeout, counted from the first byte).
    s.once('connect', drip);
    const timer = setInterval(drip, 1000);
    cleanups.push(() => {
      clearInterval(timer);
      s.destroy();
    });
    return new Promise<number>((resolve) =>
      s.once('close', () => {
        clearInterval(timer);
        resolve(Date.now() - started);
      }),
    );
  });
  slowloris = { node: n, sid, token, started, drips, answers };
});

async function node(env: Record<string, string> = {}, server?: NodeOptions['server']) {
  const n = await startNode({ env, server });
  cleanups.push(() => n.close());
  return n;
}

async function ownMessages(n: Node, userId: string): Promise<number> {
  const row = await (n.server.store as KyselyChatStore).db
    .selectFrom('live_chat_messages')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('abuse (issue 6)', () => {
  it('[H-ABUSE-01] one user sending 100 messages/s: exactly 10 stored (the per-minute limit), the rest `rate_limited` with retry_after_ms; the flood is closed 1008 within 2 s; a bystander is unaffected', async () => {
    const n = await node();
    const abuser = await n.token('abuser');
    const bystander = await n.token('bystander');
    const sid = await n.sessionId(abuser);
    const a = await n.connect(sid, abuser);
    const b = await n.connect(sid, bystander);
    const started = Date.now();
    for (let i = 0; i < 300 && a.ws.readyState === a.ws.OPEN; i++) {
      a.send({ type: 'message', message: `spam ${i}`, client_msg_id: `spam-${i}` });
      if (i % 10 === 9) await sleep(100); // 100 a second
    }
    const closed = await within(a.closed, 5000, 'close of the flooder');
    expect(closed).toEqual({ code: 1008, reason: 'too many refused frames' });
    expect(Date.now() - started).toBeLessThan(2000);
    const limited = a.events.filter((e) => e.type === 'error' && e.code === 'rate_limited');
    expect(limited.length).toBeGreaterThan(50);
    for (const e of limited) expect(e.retry_after_ms).toBeGreaterThan(0);
    expect(await ownMessages(n, n.userId(abuser))).toBe(10);
    // The limit is the user's, not the socket's: a new socket is still limited.
    const again = await n.connect(sid, abuser);
    again.send({ type: 'message', message: 'after reconnect', client_msg_id: 'again-1' });
    expect((await again.next('error')).code).toBe('rate_limited');
    // The bystander saw the 10 and can talk.
    b.send({ type: 'message', message: 'still here', client_msg_id: 'by-1' });
    await b.next('new_message', (e) => e.message.client_msg_id === 'by-1');
    expect(b.messages().filter((m) => m.user_id === n.userId(abuser))).toHaveLength(10);
  });

  it('[H-ABUSE-09] an open socket keeps nothing of its upgrade: no deadline timer, close listener or HTTP response of ours stays on its TCP socket for the hours it is open', async () => {
    const n = await node();
    const token = await n.token('long-stay');
    const sid = await n.sessionId(token);
    await n.connect(sid, token);
    await n.connect(sid, await n.token('long-stay-2'));
    const clients = [...n.server.app.websocketServer.clients];
    expect(clients).toHaveLength(2);
    for (const ws of clients) {
      const tcp = (ws as unknown as { _socket: Socket & { _httpMessage?: unknown } })._socket;
      // What `ws` itself listens to is all that is left (a listener of ours would keep its closure, the
      // cleared deadline timer and the socket's bookkeeping alive per connection).
      expect(tcp.listeners('close').map((f) => f.name)).toEqual(['socketOnClose']);
      expect(tcp._httpMessage ?? null).toBeNull();
    }
  });

  it('[H-ABUSE-02] 20 sockets for one user opened at once (a race): exactly 5 get `init`, 15 are closed 4429; a freed slot is reusable; another user is unaffected', async () => {
    const n = await node({ LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100000' });
    const hog = await n.token('hog');
    const sid = await n.sessionId(hog);
    const url = `${n.wsUrl}/live-chat/ws/${sid}?token=${hog}`;
    const attempts = await Promise.all(
      Array.from({ length: 20 }, () => TestClient.connect(url, { waitForInit: false })),
    );
    await sleep(500);
    const open = attempts.filter((c) => c.events.some((e) => e.type === 'init'));
    const refused = await Promise.all(
      attempts.filter((c) => !open.includes(c)).map((c) => within(c.closed, 3000, 'refusal')),
    );
    expect(open).toHaveLength(5);
    expect(refused.map((r) => r.code)).toEqual(Array(15).fill(4429));
    for (const c of open) expect(c.ws.readyState).toBe(c.ws.OPEN);
    open[0]!.close();
    await within(open[0]!.closed, 3000, 'close');
    await sleep(50);
    const reuse = await TestClient.connect(url);
    expect(reuse.init?.type).toBe('init');
    const other = await n.connect(sid, await n.token('not-a-hog'));
    expect(other.init?.type).toBe('init');
    for (const c of [...open, reuse, other]) c.terminate();
  });

  it('[H-ABUSE-03] 10,000 connection attempts from one address (cap 100/min): ≤ 100 + refill upgraded, the rest HTTP 429 with Retry-After; a second address is not affected', async () => {
    const n = await node({ LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100', TRUST_PROXY: '127.0.0.1' });
    const token = await n.token('crowd');
    const sid = await n.sessionId(token);
    const url = `${n.wsUrl}/live-chat/ws/${sid}`;
    const statuses = new Map<number, number>();
    let retryAfter = '';
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < 10_000) {
          next++;
          const raw = await RawWs.open(url, { headers: { 'X-Forwarded-For': '203.0.113.7' } });
          statuses.set(raw.status, (statuses.get(raw.status) ?? 0) + 1);
          if (raw.status === 429)
            retryAfter = /retry-after: (\d+)/i.exec(raw.responseHead)?.[1] ?? retryAfter;
          raw.destroy();
        }
      }),
    );
    const floodEnded = Date.now();
    const elapsedS = (floodEnded - started) / 1000;
    const upgraded = statuses.get(101) ?? 0;
    expect(upgraded + (statuses.get(429) ?? 0)).toBe(10_000);
    expect(upgraded).toBeGreaterThanOrEqual(100);
    expect(upgraded).toBeLessThanOrEqual(100 + Math.ceil((elapsedS * 100) / 60) + 1);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(elapsedS).toBeLessThan(60);
    // Another address, right now: served normally.
    const neighbour = await TestClient.connect(`${url}?token=${token}`, {
      headers: { 'X-Forwarded-For': '203.0.113.8' },
    });
    expect(neighbour.init?.type).toBe('init');
    neighbour.close();
    // And the flooding address is still refused: beyond what refilled since the flood (100/min; the neighbour's
    // connect can take a while on a loaded machine), its next attempt is a 429.
    const refilled = Math.ceil(((Date.now() - floodEnded) / 1000) * (100 / 60)) + 1;
    const after: number[] = [];
    for (let i = 0; i <= refilled; i++) {
      const flooder = await RawWs.open(url, { headers: { 'X-Forwarded-For': '203.0.113.7' } });
      after.push(flooder.status);
      flooder.destroy();
    }
    expect(after.filter((s) => s === 101).length).toBeLessThanOrEqual(refilled);
    expect(after.at(-1)).toBe(429);
  });

  it('[H-ABUSE-04] the per-address cap cannot be dodged: X-Forwarded-For from an untrusted peer is ignored, and IPv6 addresses of one /64 share one budget', async () => {
    const n = await node({ LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '20', TRUST_PROXY: '127.0.0.1' });
    const url = `${n.wsUrl}/live-chat/ws/1`;
    const attempt = async (xff: string, localAddress?: string) => {
      const raw = await RawWs.open(url, { headers: { 'X-Forwarded-For': xff }, localAddress });
      raw.destroy();
      return raw.status;
    };
    // An untrusted peer (127.0.0.3) rotating fake addresses: all counted as 127.0.0.3.
    const untrusted: number[] = [];
    for (let i = 0; i < 40; i++) untrusted.push(await attempt(`198.51.100.${i}`, '127.0.0.3'));
    expect(untrusted.filter((s) => s === 101).length).toBeLessThanOrEqual(21);
    expect(untrusted.slice(-5)).toEqual(Array(5).fill(429));
    // A trusted proxy forwarding a client that rotates through its /64.
    const v6: number[] = [];
    for (let i = 0; i < 40; i++) v6.push(await attempt(`2001:db8:1:2:${i.toString(16)}::${i + 1}`));
    expect(v6.filter((s) => s === 101).length).toBeLessThanOrEqual(21);
    expect(v6.slice(-5)).toEqual(Array(5).fill(429));
    // Another /64 is another budget.
    expect(await attempt('2001:db8:1:3::1')).toBe(101);
  });

  it('[H-ABUSE-05] half-open clients (no pong, no FIN) are found by the heartbeat and removed within 2 heartbeat periods (scaled: 500 ms, so ≤ 1.5 s with slack; 30 s → ≤ 60 s in production): viewers, slots and open connections back', async () => {
    const n = await node({}, { heartbeatMs: 500 });
    const ghost = await n.token('ghost');
    const watcher = await n.token('watcher');
    const sid = await n.sessionId(ghost);
    const w = await n.connect(sid, watcher); // a real client: ws answers pings by itself
    const ghosts: RawWs[] = [];
    for (let i = 0; i < 5; i++) {
      const raw = await RawWs.open(`${n.wsUrl}/live-chat/ws/${sid}?token=${ghost}`);
      ghosts.push(raw);
    }
    await w.count('viewer_count_update', 'viewer_count', (v) => v === 2, 3000);
    expect(await metric(n.url, 'drawchat_open_connections')).toBe(6);
    // They answered pings so far; now they go silent without a FIN, like a phone that went into a tunnel.
    for (const g of ghosts) {
      g.autoPong = false;
      g.answerClose = false;
    }
    const silenced = Date.now();
    await within(Promise.all(ghosts.map((g) => g.ended)), 3000, 'ghosts terminated');
    // Two periods (one to send the ping, one to find it unanswered) plus scheduling slack.
    expect(Date.now() - silenced).toBeLessThanOrEqual(2 * 500 + 500);
    await w.count('viewer_count_update', 'viewer_count', (v) => v === 1, 3000);
    expect(await metric(n.url, 'drawchat_open_connections')).toBe(1);
    // The ghost's 5 slots are free again.
    const back = await Promise.all(Array.from({ length: 5 }, () => n.connect(sid, ghost)));
    for (const c of back) expect(c.init?.type).toBe('init');
    // The real client survived many heartbeats.
    w.send({ type: 'ping' });
    await w.next('pong');
    for (const c of [...back, w]) c.terminate();
  });

  it('[H-ABUSE-05b] the heartbeat spreads its pings over its period instead of pinging every socket in one turn (10,000 ping writes in one turn held a node for hundreds of ms every 30 s), and still pings each socket once a period', async () => {
    const period = 1_200;
    const n = await node({}, { heartbeatMs: period });
    const sid = await n.sessionId(await n.token('hb-0'));
    const pings: number[][] = [];
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 40; i++) {
      const token = await n.token(`hb-${i}`);
      const ws = new WebSocket(`${n.wsUrl}/live-chat/ws/${sid}?token=${token}`);
      const times: number[] = [];
      pings.push(times);
      ws.on('ping', () => times.push(performance.now()));
      await new Promise<void>((resolve, reject) => {
        ws.once('message', () => resolve()); // init
        ws.once('error', reject);
      });
      sockets.push(ws);
    }
    const from = performance.now();
    // Two full periods after the last socket opened: every socket has had two pings by then.
    await new Promise((resolve) => setTimeout(resolve, 2 * period + 300));
    const since = pings.map((times) => times.filter((t) => t >= from));
    for (const times of since) expect(times.length).toBeGreaterThanOrEqual(1);
    const first = since.map((times) => times[0]!).sort((a, b) => a - b);
    // All in one turn would put the 40 first pings within a few ms of each other.
    expect(first.at(-1)! - first[0]!).toBeGreaterThan(period / 2);
    let busiest = 0;
    for (let i = 0; i < first.length; i++) {
      let j = i;
      while (j < first.length && first[j]! - first[i]! < 30) j++;
      busiest = Math.max(busiest, j - i);
    }
    expect(busiest).toBeLessThanOrEqual(10);
    // They answered (ws pongs by itself), so the heartbeat kept them all.
    for (const ws of sockets) expect(ws.readyState).toBe(WebSocket.OPEN);
    for (const ws of sockets) ws.terminate();
  });

  it('[H-ABUSE-06] a client that stops reading while the room is busy (20 MB in 2 s): its send buffer stays under 4 MiB (1 MiB limit + one tick), it is cut off 4408, a reading client is not held up, and it resumes without loss', async () => {
    const n = await node({
      LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000000',
      LIVE_CHAT_MAX_MESSAGE_LENGTH: '8000',
      LIVE_CHAT_MAX_FRAME_BYTES: '65536',
    });
    const sender = await n.token('busy-sender');
    const sid = await n.sessionId(sender);
    const user = await n.server.service.resolveUser({
      userId: n.userId(sender),
      claimName: 'busy-sender',
      claimPicture: null,
      fallbackName: 'busy-sender',
      isHost: false,
    });
    const slowToken = await n.token('slow-reader');
    const slow = await RawWs.open(`${n.wsUrl}/live-chat/ws/${sid}?token=${slowToken}`);
    await waitFor(() => slow.events().some((e) => e.type === 'init'), 3000, 'init of the slow client');
    const fast = await n.connect(sid, await n.token('fast-reader'));
    slow.socket.pause(); // stops reading: the kernel buffers fill, then the server's
    let maxBuffered = 0;
    const sampler = setInterval(() => {
      for (const ws of n.server.app.websocketServer.clients)
        maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
    }, 2);
    const text = 'y'.repeat(7900);
    const acked: number[] = [];
    for (let i = 0; i < 2500; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, k) =>
          n.server.service.sendMessage(user, { message: `${i + k} ${text}`, sessionId: sid }),
        ),
      );
      for (const r of batch) acked.push(r.message.id);
    }
    await sleep(200);
    clearInterval(sampler);
    expect(await metric(n.url, 'drawchat_slow_consumers_total')).toBe(1);
    // The 1 MiB limit is checked before each tick's write, so one tick's frames can land on top of it; a tick
    // holds at most what the room produced in it. Bounded either way: far below the 20 MB the room carried.
    expect(maxBuffered).toBeLessThan(4 * MiB);
    // The reading client got everything, in order, while the other one stalled.
    await fast.collect('new_message', (l) => l.length >= acked.length, 10_000);
    expect(fast.messages().map((m) => m.id)).toEqual(acked);
    // The slow client reads again: what reached it, then the close (4408), or a reset if the server gave up
    // waiting for its close handshake. Either way it resumes from the last id it saw.
    slow.socket.resume();
    const { code } = await within(slow.closed, 10_000, 'end of the slow socket');
    expect([4408, undefined]).toContain(code);
    const got = slow
      .events()
      .filter((e) => e.type === 'new_message')
      .map((e) => e.message.id as number);
    const last = got.at(-1) ?? 0;
    expect(got.length).toBeLessThan(acked.length);
    const resumed = await n.connect(sid, slowToken, { query: `since=${last}` });
    // Up to MAX_RESUME_MESSAGES missed messages are replayed in `init`; beyond that the server says
    // `resync_required` and the client reloads what it missed from the history API (as src/client does).
    const ids = new Set(got);
    if (resumed.events.some((e) => e.type === 'resync_required')) {
      expect(got.length).toBeLessThan(acked.length - MAX_RESUME_MESSAGES);
      let after = last;
      for (;;) {
        const page = await n.request('GET', `/live-chat/messages?session_id=${sid}&after_id=${after}`, {
          token: slowToken,
        });
        for (const m of page.body.messages) ids.add(m.id);
        after = page.body.messages.at(-1)?.id ?? after;
        if (!page.body.has_more) break;
      }
    }
    for (const id of seenIds(resumed)) ids.add(id);
    // Nothing lost; shown once (duplicates dropped by id), in id order.
    expect([...ids].filter((id) => id <= acked.at(-1)!).sort((a, b) => a - b)).toEqual(acked);
    resumed.terminate();
    fast.terminate();
  });

  it.skipIf(!redisReady)(
    '[H-ABUSE-07] 2,000 connect/disconnect cycles at full speed (≥ 150/s on 2 cores; the issue asks 1,000/s): file descriptors, heap, Redis subscriptions, connection slots and viewers back at baseline',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'drawchat-churn-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const mint = await devTokens(dir);
      const prefix = uniquePrefix();
      const p = spawnNode({
        DATABASE_URL: `sqlite:${dir}/chat.db`,
        DATA_DIR: dir,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_KEY_PREFIX: prefix,
        LOG_LEVEL: 'info',
        LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '1000000',
      });
      cleanups.push(() => killHard(p));
      const redis = new Redis(TEST_REDIS_URL);
      cleanups.push(() => void redis.quit());
      const url = await p.url;
      const tokens = await Promise.all(Array.from({ length: 40 }, (_, i) => mint(`churn-${i}`)));
      const status = await (
        await fetch(`${url}/live-chat/status`, { headers: { authorization: `Bearer ${tokens[0]}` } })
      ).json();
      const sid = (status as any).session.id as number;
      const wsUrl = (t: string) => `${url.replace(/^http/, 'ws')}/live-chat/ws/${sid}?token=${t}`;
      const subscribers = async () =>
        Number(((await redis.pubsub('NUMSUB', `${prefix}session:${sid}`)) as [string, number])[1]);
      // Warm up, then the baseline.
      for (const t of tokens.slice(0, 10)) (await TestClient.connect(wsUrl(t))).close();
      await sleep(500);
      const before = await p.probe();
      const subsBefore = await subscribers();
      expect(subsBefore).toBe(1);
      const started = Date.now();
      let cycles = 0;
      await Promise.all(
        tokens.map(async (t) => {
          while (cycles < 2000) {
            cycles++;
            const c = await TestClient.connect(wsUrl(t));
            c.terminate();
            await c.closed;
          }
        }),
      );
      const rate = cycles / ((Date.now() - started) / 1000);
      expect(rate).toBeGreaterThan(150);
      await waitFor(
        async () => (await metric(url, 'drawchat_open_connections')) === 0,
        5000,
        'no open connections',
      );
      await sleep(1000);
      const after = await p.probe();
      expect(after.fds - before.fds).toBeLessThanOrEqual(3);
      expect(after.heapUsed - before.heapUsed).toBeLessThan(8 * MiB);
      expect(await subscribers()).toBe(subsBefore);
      // Every connection slot given back, in Redis too.
      expect(await redis.keys(`${prefix}conns:*`)).toEqual([]);
      // (Departures may be reported a little late, netted against quick returns.)
      await waitFor(async () => (await metric(url, 'drawchat_viewers')) === 0, 10_000, 'no viewers');
      // And the node still works.
      const c = await TestClient.connect(wsUrl(tokens[0]!));
      expect(c.init?.type).toBe('init');
      c.close();
    },
  );

  it('[H-ABUSE-08] slowloris (started with this file): 20 upgrades sending their headers 1 byte a second are dropped 9.5–13.5 s after their first byte (10 s header timeout, checked every 2 s); others were served meanwhile', async () => {
    // Meanwhile a normal client on the same server is served at once.
    const c = await slowloris.node.connect(slowloris.sid, slowloris.token);
    expect(c.init?.type).toBe('init');
    c.close();
    const closedAfter = await within(
      Promise.all(slowloris.drips),
      Math.max(1000, slowloris.started + 16_000 - Date.now()),
      'slowloris sockets dropped',
    );
    // What they are told, when they are told anything, is a coded error (SPEC §4), not Fastify's own body.
    expect(slowloris.answers.filter((a) => a !== '').length).toBeGreaterThan(0);
    for (const answer of slowloris.answers.filter((a) => a !== '')) {
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code).toBe('request_timeout');
    }
    for (const ms of closedAfter) {
      expect(ms).toBeGreaterThanOrEqual(9_500);
      // 10 s header timeout + 2 s between Node's timeout checks + the 1 s granularity of the drip.
      expect(ms).toBeLessThan(13_500);
    }
  });
});

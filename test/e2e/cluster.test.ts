import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFreshDatabase, type FreshDatabase, postgresAvailable } from '../support/postgres.js';
import { runScript } from '../support/process.js';
import { freePortRun, PrivateRedis, redisAvailable, TEST_REDIS_URL, uniquePrefix } from '../support/redis.js';
import { startServer, type TestServer } from '../support/server.js';
import { TestClient } from '../support/ws-client.js';

const ready = (await postgresAvailable()) && (await redisAvailable());
const nginx = !spawnSync('nginx', ['-v']).error;
if (!nginx && process.env.CI === 'true')
  throw new Error('nginx is required under CI=true (.ci/run installs it)');

/** Messages a client saw, from init and live, in arrival order. */
const seen = (c: TestClient) =>
  [...(c.init?.messages ?? []), ...c.messages()].map((m: any) => m.id as number);

const sorted = (ids: number[]) => [...ids].sort((a, b) => a - b);

// Several nodes as one: real PostgreSQL, real Redis, real sockets (DESIGN §4).
describe.skipIf(!ready)('several nodes with Redis', () => {
  let db: FreshDatabase;
  let dataDir: string;
  const nodes: TestServer[] = [];

  let prefix = '';
  const startNodes = async (count: number, env: Record<string, string> = {}) => {
    prefix = uniquePrefix();
    const started: TestServer[] = [];
    for (let i = 0; i < count; i++) {
      const t = await startServer({
        env: {
          DATABASE_URL: db.url,
          REDIS_URL: TEST_REDIS_URL,
          REDIS_KEY_PREFIX: prefix,
          DATA_DIR: dataDir,
          ...env,
        },
      });
      started.push(t);
      nodes.push(t);
    }
    return started;
  };

  beforeAll(async () => {
    db = await createFreshDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'drawchat-cluster-'));
  });
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.close()));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('[SPEC §6] every client on every node receives every message exactly once, in id order', async () => {
    const servers = await startNodes(3, { LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '10000' });
    const tokens = await Promise.all(['ann', 'ben', 'cid'].map((n) => servers[0]!.token(n)));
    const sessionId = await servers[0]!.sessionId(tokens[0]!);
    const clients: TestClient[] = [];
    for (const [i, s] of servers.entries()) {
      clients.push(
        await s.connect(sessionId, tokens[i]!),
        await s.connect(sessionId, tokens[i]!, { query: 'batch=1' }),
      );
    }
    const perNode = 25;
    const acked = (
      await Promise.all(
        servers.map(async (s, i) => {
          const ids: number[] = [];
          for (let k = 0; k < perNode; k++) {
            const r = await s.request('POST', '/live-chat/messages', {
              token: tokens[i]!,
              body: { message: `node${i} #${k}` },
            });
            expect(r.status).toBe(201);
            ids.push(r.body.id);
          }
          return ids;
        }),
      )
    ).flat();
    const expected = sorted(acked);
    for (const c of clients) {
      await c.collect('new_message', (l) => l.length >= expected.length, 10_000);
      const ids = seen(c).filter((id) => expected.includes(id));
      expect(ids).toEqual(expected);
    }
  });

  it('[SPEC §5] the viewer count is the number of distinct users across nodes', async () => {
    const [a, b, c] = await startNodes(3);
    const u1 = await a!.token('viewer-one');
    const u2 = await a!.token('viewer-two');
    const sessionId = await a!.sessionId(u1);
    const onA = await a!.connect(sessionId, u1);
    const onB = await b!.connect(sessionId, u1);
    const onC = await c!.connect(sessionId, u2);
    for (const client of [onA, onB, onC]) {
      await client
        .count('viewer_count_update', 'viewer_count', (n) => n === 2, 5000)
        .catch(async () => {
          expect(client.init!.viewer_count).toBe(2);
        });
    }
    const status = await b!.request('GET', '/live-chat/status', { token: u2 });
    expect(status.body.session.viewer_count).toBe(2);
    onA.close();
    await new Promise((r) => setTimeout(r, 600));
    // viewer-one is still on node B.
    expect((await c!.request('GET', '/live-chat/status', { token: u2 })).body.session.viewer_count).toBe(2);
    onB.close();
    await onC.count('viewer_count_update', 'viewer_count', (n) => n === 1, 5000);
    const rows = await new pg.Client({ connectionString: db.url });
    await rows.connect();
    try {
      // The table is written with the next group commit, or within a second (API.md §11): poll it.
      const active = async () =>
        Number(
          (
            await rows.query(
              'SELECT COUNT(*) FROM live_chat_viewers WHERE is_active = true AND user_id = ANY($1)',
              [[a!.userId(u1), a!.userId(u2)]],
            )
          ).rows[0].count,
        );
      const deadline = Date.now() + 5000;
      while ((await active()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await active()).toBe(1);
    } finally {
      await rows.end();
    }
  });

  it('[SPEC §8] viewer rows left active by a node that died are healed by the others', async () => {
    const [a, b] = await startNodes(2);
    const live = await a!.token('still-here');
    const sessionId = await a!.sessionId(live);
    const client = await b!.connect(sessionId, live);
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    try {
      // Node B writes its viewer's row with its next group commit, or within a second (API.md §11).
      const deadline = Date.now() + 5000;
      const liveRow = () =>
        sql.query('SELECT 1 FROM live_chat_viewers WHERE session_id = $1 AND user_id = $2', [
          sessionId,
          a!.userId(live),
        ]);
      while ((await liveRow()).rowCount === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect((await liveRow()).rowCount).toBe(1);
      // What a killed node leaves behind: an active row for a user no node has.
      await sql.query(
        `INSERT INTO live_chat_viewers (session_id, user_id, is_active, first_seen_at, last_seen_at)
         VALUES ($1, 'ghost', true, now(), now())
         ON CONFLICT (session_id, user_id) DO UPDATE SET is_active = true`,
        [sessionId],
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(await a!.server.service.reconcileViewers()).toBe(1);
      await a!.server.service.drain();
      const rows = await sql.query(
        'SELECT user_id FROM live_chat_viewers WHERE session_id = $1 AND is_active = true ORDER BY user_id',
        [sessionId],
      );
      expect(rows.rows.map((r) => r.user_id)).toEqual([a!.userId(live)]);
    } finally {
      await sql.end();
      client.close();
    }
  });

  it('[SPEC §8] viewer rows of an ended session left active by nodes that died are made inactive; a row wrongly inactive for a user who is watching is made active again', async () => {
    const [a, b] = await startNodes(2);
    const watching = await a!.token('watching-here');
    const watcherId = a!.userId(watching);
    const sessionId = await a!.sessionId(watching);
    const client = await b!.connect(sessionId, watching);
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    try {
      const active = async (sid: number) =>
        (
          await sql.query(
            'SELECT user_id FROM live_chat_viewers WHERE session_id = $1 AND is_active = true ORDER BY user_id',
            [sid],
          )
        ).rows.map((r) => r.user_id as string);
      const deadline = Date.now() + 5000;
      while (!(await active(sessionId)).includes(watcherId) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await active(sessionId)).toContain(watcherId);
      // Yesterday's draw, whose nodes were all killed before its window ended: its rows still say active.
      const ended = await sql.query(
        `INSERT INTO live_chat_sessions (draw_time, starts_at, ends_at)
         VALUES (now() - interval '1 day', now() - interval '1 day 1 hour', now() - interval '23 hours')
         RETURNING id`,
      );
      const endedId = Number(ended.rows[0].id);
      await sql.query(
        `INSERT INTO live_chat_viewers (session_id, user_id, is_active, first_seen_at, last_seen_at)
         VALUES ($1, 'left-behind-1', true, now(), now()), ($1, 'left-behind-2', true, now(), now())`,
        [endedId],
      );
      // A write lost in an outage, or two nodes' writes committed out of order: a watching user's row says left.
      await sql.query(
        'UPDATE live_chat_viewers SET is_active = false WHERE session_id = $1 AND user_id = $2',
        [sessionId, watcherId],
      );
      expect(await a!.server.service.reconcileViewers()).toBe(3);
      await a!.server.service.drain();
      expect(await active(endedId)).toEqual([]);
      expect(await active(sessionId)).toContain(watcherId);
      // Settled: nothing more to correct.
      expect(await b!.server.service.reconcileViewers()).toBe(0);
    } finally {
      await sql.end();
      client.close();
    }
  });

  it('[SPEC §2, §4] a profile the draw backend sets on one node names the next message of a socket open on another', async () => {
    const adminKey = 'k'.repeat(32);
    const [a, b] = await startNodes(2, {
      LIVE_CHAT_ADMIN_API_KEY: adminKey,
      LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000',
    });
    const token = await a!.token('pictured-later');
    const userId = a!.userId(token);
    const sessionId = await a!.sessionId(token);
    const client = await a!.connect(sessionId, token);
    try {
      client.send({ type: 'message', message: 'no picture yet', client_msg_id: 'pic-0' });
      const before = await client.next('new_message', (e) => e.message.client_msg_id === 'pic-0');
      expect(before.message.profile_pic).toBeNull();
      const put = await b!.request('PUT', `/live-chat/users/${userId}`, {
        headers: { 'x-admin-key': adminKey },
        body: { profile_pic: 'https://cdn.example.com/later.png' },
      });
      expect(put.status).toBe(200);
      // The other node hears of it over Redis; its next message carries the picture.
      const deadline = Date.now() + 5000;
      let pictured: any;
      for (let i = 1; !pictured && Date.now() < deadline; i++) {
        client.send({ type: 'message', message: `try ${i}`, client_msg_id: `pic-${i}` });
        const m = await client.next('new_message', (e) => e.message.client_msg_id === `pic-${i}`);
        if (m.message.profile_pic) pictured = m.message;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(pictured).toMatchObject({ user_id: userId, profile_pic: 'https://cdn.example.com/later.png' });
    } finally {
      client.close();
    }
  });

  it('[SPEC §4] winners set on two nodes in turn: a late publish of the earlier list does not replace the later one on any node', async () => {
    const servers = await startNodes(2);
    const host = await servers[0]!.token('crowning-host', { roles: ['host'] });
    const winnerTokens = await Promise.all(
      ['first-winner', 'second-winner'].map((n) => servers[0]!.token(n)),
    );
    const [first, second] = winnerTokens.map((t) => servers[0]!.userId(t));
    const sessionId = await servers[0]!.sessionId(host);
    const viewers = await Promise.all(servers.map((s) => s.connect(sessionId, host)));
    for (const [i, ids] of [[first], [second]].entries()) {
      const r = await servers[i]!.request('POST', `/live-chat/sessions/${sessionId}/winners`, {
        token: host,
        body: { user_ids: ids },
      });
      expect(r.status).toBe(200);
      for (const v of viewers) await v.next('winner_update', (e) => e.user_ids[0] === ids[0]);
    }
    // The first list's publish, as it reaches a node after the second (two HOSTs at the draw moment: each node
    // applies its own list at once and the other's when Redis brings it).
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const late = {
        v: 1,
        node: 'late-node',
        events: [{ kind: 'winners', sessionId, userIds: [first], version: 1 }],
      };
      await redis.publish(`${prefix}session:${sessionId}`, JSON.stringify(late));
    } finally {
      redis.disconnect();
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const v of viewers) {
      expect(v.events.filter((e) => e.type === 'winner_update').map((e) => e.user_ids)).toEqual([
        [first],
        [second],
      ]);
    }
    // And a viewer joining either node is told the winners of the database.
    for (const s of servers) {
      const [was, is] = await Promise.all(winnerTokens.map((t) => s.connect(sessionId, t)));
      expect([was!.init!.you.is_winner, is!.init!.you.is_winner]).toEqual([false, true]);
      was!.close();
      is!.close();
    }
    for (const v of viewers) v.close();
  });

  it('[SPEC §6] the 11th message in a minute is refused whichever node it goes to; nothing of it is stored', async () => {
    const servers = await startNodes(3);
    const token = await servers[0]!.token('limited');
    for (let i = 0; i < 10; i++) {
      const r = await servers[i % 3]!.request('POST', '/live-chat/messages', {
        token,
        body: { message: `m${i}` },
      });
      expect(r.status, `message ${i}`).toBe(201);
    }
    for (const s of servers) {
      const r = await s.request('POST', '/live-chat/messages', { token, body: { message: 'one too many' } });
      expect(r.status).toBe(429);
      expect(r.body.error.code).toBe('rate_limited');
      expect(r.body.error.retry_after_ms).toBeGreaterThan(0);
    }
    const history = await servers[1]!.request('GET', '/live-chat/messages', { token });
    expect(history.body.messages.filter((m: any) => m.message === 'one too many')).toHaveLength(0);
  });

  it('[SPEC §6] a user’s connection cap holds across nodes', async () => {
    const servers = await startNodes(2, { LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '2' });
    const token = await servers[0]!.token('many-tabs');
    const sessionId = await servers[0]!.sessionId(token);
    await servers[0]!.connect(sessionId, token);
    await servers[1]!.connect(sessionId, token);
    const third = await servers[0]!.connect(sessionId, token, { waitForInit: false });
    expect((await third.closed).code).toBe(4429);
  });

  it('[SPEC §4] hearts sent concurrently on all nodes sum exactly, and every node shows the total', async () => {
    const servers = await startNodes(3);
    const watcher = await servers[0]!.token('watcher');
    const sessionId = await servers[0]!.sessionId(watcher);
    const before = (await servers[0]!.request('GET', '/live-chat/status', { token: watcher })).body.session
      .total_likes;
    const clients = await Promise.all(servers.map((s) => s.connect(sessionId, watcher)));
    const tokens = await Promise.all(Array.from({ length: 6 }, (_, i) => servers[0]!.token(`fan${i}`)));
    const results = await Promise.all(
      tokens.flatMap((token, i) =>
        Array.from({ length: 20 }, () => servers[i % 3]!.request('POST', '/live-chat/like', { token })),
      ),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    const total = before + 120;
    for (const c of clients) await c.count('session_like_update', 'total_likes', (n) => n === total, 5000);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const r = await client.query('SELECT total_likes FROM live_chat_sessions WHERE is_active = true');
      expect(Number(r.rows[0].total_likes)).toBe(total);
    } finally {
      await client.end();
    }
  });

  it('[DESIGN §4] Redis restarted mid-stream: nothing acknowledged is lost for anyone', async () => {
    const redis = await PrivateRedis.start();
    try {
      const servers = await startNodes(2, {
        REDIS_URL: redis.url,
        LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '10000',
      });
      const tokens = await Promise.all(['r1', 'r2'].map((n) => servers[0]!.token(n)));
      const sessionId = await servers[0]!.sessionId(tokens[0]!);
      const clients = [
        await servers[0]!.connect(sessionId, tokens[0]!),
        await servers[1]!.connect(sessionId, tokens[1]!),
      ];
      const acked: number[] = [];
      const send = async (rounds: number) => {
        for (let k = 0; k < rounds; k++) {
          for (const [i, s] of servers.entries()) {
            const r = await s.request('POST', '/live-chat/messages', {
              token: tokens[i]!,
              body: { message: `r${k}` },
            });
            expect(r.status).toBe(201);
            acked.push(r.body.id);
          }
        }
      };
      await send(5);
      await redis.kill();
      await send(5);
      // SPEC §4: readiness is the database and, when configured, Redis reachable. The node still serves.
      const ready = await servers[0]!.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ status: 'degraded', checks: { database: 'ok' } });
      expect(ready.body.checks.redis).toMatch(/^unreachable/);
      // Changes on node 2 whose publishes are lost: node 1 must still learn them.
      const host = await servers[0]!.token('the-host', { roles: ['host'] });
      // The last message node 1 committed itself: its own viewers have it.
      const doomed = acked[acked.length - 2]!;
      await clients[0]!.next('new_message', (e) => e.message.id === doomed, 5000);
      expect(
        (await servers[1]!.request('DELETE', `/live-chat/messages/${doomed}`, { token: host })).status,
      ).toBe(200);
      acked.splice(acked.length - 2, 1);
      const winner = servers[0]!.userId(tokens[0]!);
      const crowned = await servers[1]!.request('POST', `/live-chat/sessions/${sessionId}/winners`, {
        token: host,
        body: { user_ids: [winner] },
      });
      expect(crowned.status).toBe(200);
      await redis.start();
      await send(5);
      await clients[0]!.next('message_deleted', (e) => e.message_id === doomed, 10_000);
      await clients[0]!.next('winner_update', (e) => e.user_ids.includes(winner), 10_000);
      const fresh = await servers[0]!.connect(sessionId, tokens[0]!);
      expect(fresh.init!.messages.some((m: any) => m.id === doomed)).toBe(false);
      expect(fresh.init!.you.is_winner).toBe(true);
      const expected = sorted(acked);
      for (const c of clients) {
        await c.collect('new_message', () => expected.every((id) => seen(c).includes(id)), 15_000);
        expect(seen(c).filter((id) => expected.includes(id))).toEqual(expected);
      }
      fresh.close();
    } finally {
      await redis.kill();
    }
  });
});

// Whole node processes: one is killed with SIGKILL while messages flow.
describe.skipIf(!ready)('a node dies', () => {
  let db: FreshDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createFreshDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'drawchat-kill-'));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('[SPEC §6] kill -9 of one node: its clients resume on the others with since and miss no acknowledged message', {
    timeout: 120_000,
  }, async () => {
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_KEY_PREFIX: uniquePrefix(),
      DATA_DIR: dataDir,
      PORT: '0',
      LOG_LEVEL: 'warn',
      LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '100000',
    };
    const procs = [runScript('src/main.ts', { ...env, LOG_LEVEL: 'info' })];
    await procs[0]!.url; // the first node creates the dev key; the others reuse it
    procs.push(
      runScript('src/main.ts', { ...env, LOG_LEVEL: 'info' }),
      runScript('src/main.ts', { ...env, LOG_LEVEL: 'info' }),
    );
    const urls = await Promise.all(procs.map((p) => p.url));
    try {
      const mint = async (name: string) =>
        (
          (await (
            await fetch(`${urls[0]}/live-chat/dev/token`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ username: name }),
            })
          ).json()) as any
        ).token as string;
      const sender = await mint('sender');
      const viewer = await mint('viewer');
      const status = (await (
        await fetch(`${urls[1]}/live-chat/status`, { headers: { authorization: `Bearer ${sender}` } })
      ).json()) as any;
      const sessionId = status.session.id;
      const wsUrl = (u: string, since?: number) =>
        `${u.replace('http', 'ws')}/live-chat/ws/${sessionId}?token=${viewer}${since ? `&since=${since}` : ''}`;
      const clients = await Promise.all(urls.map((u) => TestClient.connect(wsUrl(u))));

      const acked: number[] = [];
      let stop = false;
      let k = 0;
      const flow = (async () => {
        while (!stop) {
          const target = urls[1 + (k % 2)]!;
          const r = await fetch(`${target}/live-chat/messages`, {
            method: 'POST',
            headers: { authorization: `Bearer ${sender}`, 'content-type': 'application/json' },
            body: JSON.stringify({ message: `steady ${k++}` }),
          });
          if (r.status === 201) acked.push(((await r.json()) as any).id);
          await new Promise((res) => setTimeout(res, 10));
        }
      })();
      await new Promise((r) => setTimeout(r, 400));
      procs[0]!.child.kill('SIGKILL');
      const dropped = clients[0]!;
      await dropped.closed;
      const lastSeen = Math.max(0, ...seen(dropped));
      const resumed = await TestClient.connect(wsUrl(urls[1]!, lastSeen));
      await new Promise((r) => setTimeout(r, 400));
      stop = true;
      await flow;
      const expected = sorted(acked);
      // The flow ran before, during and after the kill (a loaded machine sends fewer; the point is the kill).
      expect(expected.length).toBeGreaterThan(5);
      const survivorViews = [clients[1]!, clients[2]!];
      for (const c of survivorViews) {
        await c.collect('new_message', () => expected.every((id) => seen(c).includes(id)), 10_000);
        expect(seen(c).filter((id) => expected.includes(id))).toEqual(expected);
      }
      await resumed.collect(
        'new_message',
        () => expected.every((id) => seen(dropped).concat(seen(resumed)).includes(id)),
        10_000,
      );
      const combined = [...seen(dropped), ...seen(resumed)].filter((id) => expected.includes(id));
      expect(combined).toEqual(expected);
      for (const c of [...clients, resumed]) c.terminate();
    } finally {
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
    }
  });
});

describe.skipIf(!ready || !nginx)('npm run cluster: nodes behind nginx', () => {
  let db: FreshDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createFreshDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'drawchat-lb-'));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('[issue 4] two clients chat through the load balancer, landing on different nodes', {
    timeout: 120_000,
  }, async () => {
    // The balancer's port and the nodes' two after it, all free (the CLI puts node i on base-port + i).
    const lbPort = await freePortRun(3);
    const basePort = lbPort + 1;
    const cluster = runScript(
      'src/cli/cluster.ts',
      {
        DATABASE_URL: db.url,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_KEY_PREFIX: uniquePrefix(),
        DATA_DIR: dataDir,
        LOG_LEVEL: 'info',
      },
      ['--nodes', '2', '--port', String(lbPort), '--base-port', String(basePort)],
    );
    try {
      const deadline = Date.now() + 60_000;
      while ((cluster.stdout.join('').match(/draw-chat listening/g) ?? []).length < 2) {
        if (Date.now() > deadline) throw new Error(`cluster did not start: ${cluster.stdout.join('')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(cluster.stdout.join('')).toContain(`load balancer on http://127.0.0.1:${lbPort}`);
      const lb = `http://127.0.0.1:${lbPort}`;
      const mint = async (username: string) =>
        (
          (await (
            await fetch(`${lb}/live-chat/dev/token`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ username }),
            })
          ).json()) as any
        ).token as string;
      let ready = false;
      for (let i = 0; i < 50 && !ready; i++) {
        ready = (await fetch(`${lb}/readyz`).catch(() => undefined))?.status === 200;
        if (!ready) await new Promise((r) => setTimeout(r, 100));
      }
      const [amy, bo] = [await mint('amy'), await mint('bo')];
      const status = (await (
        await fetch(`${lb}/live-chat/status`, { headers: { authorization: `Bearer ${amy}` } })
      ).json()) as any;
      const ws = (token: string) =>
        `${lb.replace('http', 'ws')}/live-chat/ws/${status.session.id}?token=${token}`;
      // A browser on the balancer's origin: the nodes see the same host, so same-origin holds behind the proxy.
      const a = await TestClient.connect(ws(amy), { origin: lb });
      const b = await TestClient.connect(ws(bo), { origin: lb });
      a.send({ type: 'message', message: 'hello from amy' });
      b.send({ type: 'message', message: 'hello from bo' });
      for (const c of [a, b]) {
        const texts = (await c.collect('new_message', (l) => l.length >= 2, 10_000)).map(
          (e) => e.message.message,
        );
        expect(texts.sort()).toEqual(['hello from amy', 'hello from bo']);
      }
      await a
        .count('viewer_count_update', 'viewer_count', (n) => n === 2, 5000)
        .catch(() => expect(b.init!.viewer_count).toBe(2));
      // least_conn spread the two sockets over both nodes.
      const opened = cluster.stdout
        .join('')
        .split('\n')
        .filter((l) => l.includes('websocket open'));
      expect(new Set(opened.map((l) => l.slice(0, l.indexOf(']') + 1))).size).toBe(2);
      a.terminate();
      b.terminate();
    } finally {
      cluster.child.kill('SIGTERM');
      await cluster.exited;
    }
  });
});

import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ManualClock } from '../../src/domain/clock.js';
import { startIssuer, type TestIssuer } from '../support/jwks.js';
import { startServer, type TestServer } from '../support/server.js';
import type { ClientOptions, TestClient } from '../support/ws-client.js';

// Real servers on ephemeral ports, real `ws` clients, SQLite in temp dirs, a real JWKS endpoint on 127.0.0.1.

const ADMIN_KEY = 'a1b2c3d4'.repeat(4); // 32 characters
const HOUR = 3_600_000;

/** Five minutes past the current hour: inside the default hourly window, far from its :30 boundaries. */
function midWindow(): number {
  return Math.floor(Date.now() / HOUR) * HOUR + 5 * 60_000;
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Opens a socket that the server is expected to refuse; returns the close code (and checks no `init` came). */
async function refusedWith(
  t: TestServer,
  sessionId: number | string,
  token: string | undefined,
  options: ClientOptions = {},
): Promise<number> {
  const client = await t.connect(sessionId, token, { ...options, waitForInit: false });
  const { code } = await within(client.closed, 5000, `close of /live-chat/ws/${sessionId}`);
  expect(
    client.events.map((e) => e.type),
    'no init before the close',
  ).not.toContain('init');
  return code;
}

async function historyOf(t: TestServer, token: string, sessionId: number): Promise<any[]> {
  const res = await t.request('GET', `/live-chat/messages?session_id=${sessionId}`, { token });
  expect(res.status).toBe(200);
  return res.body.messages;
}

function post(t: TestServer, token: string | undefined, body: unknown) {
  return t.request('POST', '/live-chat/messages', { token, body });
}

async function stillOpen(client: TestClient): Promise<void> {
  client.send({ type: 'ping' });
  expect((await client.next('pong')).server_time).toMatch(/Z$/);
}

// ---------------------------------------------------------------------------------------------------------------

describe('JWT auth against a real JWKS (not dev auth)', () => {
  let issuer: TestIssuer;
  let t: TestServer;
  let good: string;
  let sid: number;

  beforeAll(async () => {
    issuer = await startIssuer();
    t = await startServer({ env: { ...issuer.env(), LIVE_CHAT_ADMIN_API_KEY: ADMIN_KEY } });
    good = await issuer.sign({ sub: 'user-good', name: 'Good User' });
    sid = await t.sessionId(good);
  });
  afterAll(async () => {
    await t?.close();
    await issuer?.close();
  });

  it('[SPEC §2] bad tokens: HTTP 401 unauthorized, WebSocket close 4401, a POSTed message is not stored', async () => {
    const now = Math.floor(Date.now() / 1000);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const wellFormedClaims = {
      sub: 'user-forger',
      iss: issuer.issuer,
      aud: issuer.audience,
      exp: now + 3600,
    };
    const pem = await exportSPKI(issuer.publicKey);
    const stranger = await generateKeyPair('RS256');

    const cases: Array<[string, string | undefined]> = [
      ['missing token', undefined],
      ['malformed token', 'abc'],
      ['expired', await issuer.sign({ sub: 'user-expired' }, { exp: now - 60 })],
      ['wrong issuer', await issuer.sign({ sub: 'user-iss' }, { issuer: 'https://evil.test' })],
      ['no issuer', await issuer.sign({ sub: 'user-no-iss' }, { issuer: null })],
      ['wrong audience', await issuer.sign({ sub: 'user-aud' }, { audience: 'another-app' })],
      ['alg none, empty signature', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(wellFormedClaims)}.`],
      [
        'alg none, junk signature',
        `${b64({ alg: 'none', typ: 'JWT' })}.${b64(wellFormedClaims)}.${b64('sig')}`,
      ],
      [
        'HS256 keyed with the RSA public key PEM',
        await new SignJWT(wellFormedClaims)
          .setProtectedHeader({ alg: 'HS256', kid: issuer.kid, typ: 'JWT' })
          .sign(new TextEncoder().encode(pem)),
      ],
      [
        'unknown kid (a stranger’s key)',
        await issuer.sign({ sub: 'user-kid' }, { kid: 'unknown-kid', privateKey: stranger.privateKey }),
      ],
      [
        'known kid, stranger’s signature',
        await issuer.sign({ sub: 'user-sig' }, { privateKey: stranger.privateKey }),
      ],
      ['Descope refresh token (drn DSR)', await issuer.sign({ sub: 'user-refresh', drn: 'DSR' })],
    ];

    for (const [label, token] of cases) {
      const status = await t.request('GET', '/live-chat/status', { token });
      expect(status.status, label).toBe(401);
      expect(status.body.error.code, label).toBe('unauthorized');

      const sent = await post(t, token, { message: `must not be stored: ${label}` });
      expect(sent.status, label).toBe(401);
      expect(sent.body.error.code, label).toBe('unauthorized');

      expect(await refusedWith(t, sid, token), label).toBe(4401);
    }

    const stored = await historyOf(t, good, sid);
    expect(stored.filter((m) => m.message.startsWith('must not be stored'))).toEqual([]);
  });

  it('[SPEC §2] without credentials every endpoint that needs them answers 401, whatever its body, query or path (none of them described)', async () => {
    const cases: Array<[string, string, { rawBody?: string; headers?: Record<string, string> }]> = [
      ['GET', '/live-chat/status', {}],
      ['GET', '/live-chat/messages?limit=abc&before_id=-1', {}],
      ['POST', '/live-chat/messages', {}],
      [
        'POST',
        '/live-chat/messages',
        { rawBody: '{"nope":', headers: { 'content-type': 'application/json' } },
      ],
      ['POST', '/live-chat/messages', { rawBody: 'plain', headers: { 'content-type': 'text/plain' } }],
      ['POST', '/live-chat/like', { rawBody: '[]', headers: { 'content-type': 'application/json' } }],
      ['POST', '/live-chat/like-message/not-a-number', {}],
      ['DELETE', '/live-chat/like-message/-3', {}],
      ['DELETE', '/live-chat/messages/zero', {}],
      ['POST', '/live-chat/sessions/x/winners', {}],
      [
        'POST',
        `/live-chat/sessions/${sid}/winners`,
        { rawBody: '{}', headers: { 'content-type': 'application/json' } },
      ],
      ['PUT', '/live-chat/users/someone', {}],
      [
        'PUT',
        '/live-chat/users/someone',
        { rawBody: '{"username":7}', headers: { 'content-type': 'application/json' } },
      ],
    ];
    for (const [method, path, options] of cases) {
      const res = await t.request(method, path, options);
      expect(res.status, `${method} ${path} ${options.rawBody ?? ''}`).toBe(401);
      expect(res.body.error.code, `${method} ${path}`).toBe('unauthorized');
      expect(res.body.error.message, `${method} ${path}`).not.toMatch(/body|querystring|params|expected/i);
    }
    // A wrong admin key is refused before the body is looked at too.
    const wrongKey = await t.request('PUT', '/live-chat/users/someone', {
      headers: { 'x-admin-key': 'wrong' },
    });
    expect(wrongKey.status).toBe(401);
    // With credentials, the same bad requests are described.
    const described = await t.request('GET', '/live-chat/messages?limit=abc', { token: good });
    expect(described.status).toBe(400);
    expect(described.body.error.code).toBe('bad_request');
    const noBody = await t.request('PUT', '/live-chat/users/someone', {
      headers: { 'x-admin-key': ADMIN_KEY },
    });
    expect(noBody.status).toBe(400);
  });

  it('[SPEC §2] a valid session token works over HTTP and WebSocket', async () => {
    const status = await t.request('GET', '/live-chat/status', { token: good });
    expect(status.status).toBe(200);
    expect(status.body.session.id).toBe(sid);
    const c = await t.connect(sid, good);
    expect(c.init!.you).toMatchObject({ user_id: 'user-good', username: 'Good User', is_host: false });
    const sent = await post(t, good, { message: 'hello from a real token' });
    expect(sent.status).toBe(201);
    expect(sent.body).toMatchObject({ user_id: 'user-good', username: 'Good User' });
    await c.next('new_message', (e) => e.message.id === sent.body.id);
    c.close();
  });

  it('[SPEC §2] claims map to the user: name, picture, roles → HOST; roles under nsec are ignored', async () => {
    const hostToken = await issuer.sign({
      sub: 'user-host',
      name: 'Hana Host',
      picture: 'https://cdn.example.com/hana.png',
      roles: ['host'],
    });
    const host = await t.connect(sid, hostToken);
    expect(host.init!.you).toEqual({
      user_id: 'user-host',
      username: 'Hana Host',
      profile_pic: 'https://cdn.example.com/hana.png',
      is_host: true,
      is_winner: false,
    });
    host.send({ type: 'message', message: 'host here', client_msg_id: 'host-1' });
    const fromHost = await host.next('new_message', (e) => e.message.client_msg_id === 'host-1');
    expect(fromHost.message).toMatchObject({ is_host: true, username: 'Hana Host' });

    const sneakyToken = await issuer.sign({ sub: 'user-sneaky', name: 'Sneaky', nsec: { roles: ['host'] } });
    const sneaky = await t.connect(sid, sneakyToken);
    expect(sneaky.init!.you).toMatchObject({ user_id: 'user-sneaky', username: 'Sneaky', is_host: false });
    const winners = await t.request('POST', `/live-chat/sessions/${sid}/winners`, {
      token: sneakyToken,
      body: { user_ids: ['user-sneaky'] },
    });
    expect(winners.status).toBe(403);
    expect(winners.body.error.code).toBe('forbidden');
    host.close();
    sneaky.close();
  });

  it('[SPEC §2, §5] a token expiring on an open socket closes it 4401, unless an `auth` refresh came first', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const lapsing = await t.connect(sid, await issuer.sign({ sub: 'user-lapsing' }, { exp }));
    const refreshing = await t.connect(sid, await issuer.sign({ sub: 'user-refreshing' }, { exp }));
    const swapping = await t.connect(sid, await issuer.sign({ sub: 'user-swapping' }, { exp }));

    refreshing.send({ type: 'auth', token: await issuer.sign({ sub: 'user-refreshing' }) });
    swapping.send({ type: 'auth', token: await issuer.sign({ sub: 'user-someone-else' }) });
    expect((await swapping.next('error')).code).toBe('forbidden');
    lapsing.send({ type: 'auth', token: 'abc' });
    expect((await lapsing.next('error')).code).toBe('unauthorized');

    const lapsed = await within(lapsing.closed, 4000, 'close of the lapsing socket');
    const closedAt = Date.now();
    expect(lapsed.code).toBe(4401);
    expect(closedAt).toBeGreaterThanOrEqual(exp * 1000 - 50);
    expect(closedAt).toBeLessThan(exp * 1000 + 1500);
    // A refresh for another user does not extend this socket either.
    expect((await within(swapping.closed, 2000, 'close of the swapping socket')).code).toBe(4401);

    await sleep(Math.max(0, exp * 1000 + 1000 - Date.now()));
    expect(refreshing.ws.readyState).toBe(refreshing.ws.OPEN);
    await stillOpen(refreshing);
    refreshing.close();
  });

  it('[SPEC §2, §4] PUT /live-chat/users/{id} names a user whose token has no name; a token’s own name wins', async () => {
    const bare = await issuer.sign({ sub: 'user-bare' });
    const first = await t.connect(sid, bare);
    expect(first.init!.you).toMatchObject({ username: 'user-bare', profile_pic: null });
    first.close();

    const profile = { username: 'Backend Name', profile_pic: 'https://cdn.example.com/bare.png' };
    const noKey = await t.request('PUT', '/live-chat/users/user-bare', { token: bare, body: profile });
    expect(noKey.status).toBe(401);
    expect(noKey.body.error.code).toBe('unauthorized');
    const wrongKey = await t.request('PUT', '/live-chat/users/user-bare', {
      headers: { 'x-admin-key': `${ADMIN_KEY}x` },
      body: profile,
    });
    expect(wrongKey.status).toBe(401);
    for (const pic of ['javascript:alert(1)', 'data:text/html,x', 'https://user:pw@cdn.example.com/a.png']) {
      const bad = await t.request('PUT', '/live-chat/users/user-bare', {
        headers: { 'x-admin-key': ADMIN_KEY },
        body: { profile_pic: pic },
      });
      expect(bad.status, pic).toBe(400);
      expect(bad.body.error.code, pic).toBe('bad_request');
    }
    const put = await t.request('PUT', '/live-chat/users/user-bare', {
      headers: { 'x-admin-key': ADMIN_KEY },
      body: profile,
    });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ user_id: 'user-bare', ...profile });

    const later = await post(t, bare, { message: 'named by the draw backend' });
    expect(later.status).toBe(201);
    expect(later.body).toMatchObject({ user_id: 'user-bare', ...profile });
    const reconnected = await t.connect(sid, bare);
    expect(reconnected.init!.you).toMatchObject({
      username: 'Backend Name',
      profile_pic: profile.profile_pic,
    });
    reconnected.close();

    // The token's own name wins; the backend's picture still fills the gap the token leaves.
    const named = await issuer.sign({ sub: 'user-bare', name: 'Own Name' });
    const own = await post(t, named, { message: 'named by my token' });
    expect(own.body).toMatchObject({
      user_id: 'user-bare',
      username: 'Own Name',
      profile_pic: profile.profile_pic,
    });
  });

  it('[SPEC §2, §4] a PUT /live-chat/users/{id} reaches sockets already open: their next message carries the new profile; a token’s own name still wins', async () => {
    const bare = await t.connect(sid, await issuer.sign({ sub: 'user-renamed-live' }));
    const named = await t.connect(sid, await issuer.sign({ sub: 'user-named-live', name: 'Own Live Name' }));
    expect(bare.init!.you).toMatchObject({ username: 'user-renamed-live', profile_pic: null });
    bare.send({ type: 'message', message: 'before the backend names me', client_msg_id: 'live-0' });
    const before = await bare.next('new_message', (e) => e.message.client_msg_id === 'live-0');
    expect(before.message).toMatchObject({ username: 'user-renamed-live', profile_pic: null });

    for (const id of ['user-renamed-live', 'user-named-live']) {
      const put = await t.request('PUT', `/live-chat/users/${id}`, {
        headers: { 'x-admin-key': ADMIN_KEY },
        body: { username: 'Backend Live Name', profile_pic: `https://cdn.example.com/${id}.png` },
      });
      expect(put.status).toBe(200);
    }
    bare.send({ type: 'message', message: 'named by the draw backend', client_msg_id: 'live-1' });
    const after = await bare.next('new_message', (e) => e.message.client_msg_id === 'live-1');
    expect(after.message).toMatchObject({
      user_id: 'user-renamed-live',
      username: 'Backend Live Name',
      profile_pic: 'https://cdn.example.com/user-renamed-live.png',
    });
    named.send({ type: 'message', message: 'my token names me', client_msg_id: 'live-2' });
    const own = await named.next('new_message', (e) => e.message.client_msg_id === 'live-2');
    expect(own.message).toMatchObject({
      user_id: 'user-named-live',
      username: 'Own Live Name',
      profile_pic: 'https://cdn.example.com/user-named-live.png',
    });
    // Messages sent before keep the name they were sent under.
    const history = await historyOf(t, await issuer.sign({ sub: 'user-renamed-live' }), sid);
    expect(history.find((m) => m.client_msg_id === 'live-0')).toMatchObject({
      username: 'user-renamed-live',
    });
    bare.close();
    named.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('message rate limit (default 10 a minute, manual clock)', () => {
  let t: TestServer;
  let clock: ManualClock;

  beforeAll(async () => {
    clock = new ManualClock(midWindow());
    // The refusals counted here are the limits' own: no slack for a node that reads late (a loaded test run).
    t = await startServer({ clock, server: { readLagMs: () => 0 } });
  });
  afterAll(() => t?.close());

  it('[SPEC §6, §7] the 11th message in a minute is refused (WS and HTTP), not stored, and allowed a minute later', async () => {
    const rita = await t.token('rita');
    const ritaId = t.userId(rita);
    const sid = await t.sessionId(rita);
    const a = await t.connect(sid, rita);
    for (let i = 0; i < 10; i++) a.send({ type: 'message', message: `m${i}`, client_msg_id: `m-${i}` });
    await a.collect('new_message', (l) => l.length >= 10);

    a.send({ type: 'message', message: 'one too many', client_msg_id: 'm-10' });
    const err = await a.next('error');
    expect(err).toMatchObject({ code: 'rate_limited', client_msg_id: 'm-10' });
    expect(err.retry_after_ms).toBeGreaterThan(0);
    expect(err.retry_after_ms).toBeLessThanOrEqual(60_000);

    const http = await post(t, rita, { message: 'one too many over http' });
    expect(http.status).toBe(429);
    expect(http.body.error.code).toBe('rate_limited');
    const retryAfter = Number(http.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);

    // An idempotent retry of a stored message is answered, limit or not (it stores nothing).
    a.send({ type: 'message', message: 'm0', client_msg_id: 'm-0' });
    const answers = await a.collect(
      'new_message',
      (l) => l.filter((e) => e.message.client_msg_id === 'm-0').length >= 2,
    );
    const [original, replay] = answers.filter((e) => e.message.client_msg_id === 'm-0');
    expect(replay!.message).toEqual(original!.message);

    // The limit is per user: someone else is not held back.
    const other = await post(t, await t.token('otto'), { message: 'not limited' });
    expect(other.status).toBe(201);

    const ritas = (await historyOf(t, rita, sid)).filter((m) => m.user_id === ritaId);
    expect(ritas.map((m) => m.message)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));

    clock.advance(61_000);
    a.send({ type: 'message', message: 'a minute later', client_msg_id: 'm-11' });
    const accepted = await a.next('new_message', (e) => e.message.client_msg_id === 'm-11');
    expect(accepted.message.user_id).toBe(ritaId);
    const httpLater = await post(t, rita, { message: 'a minute later over http' });
    expect(httpLater.status).toBe(201);
    expect((await historyOf(t, rita, sid)).filter((m) => m.user_id === ritaId)).toHaveLength(12);
    a.close();
  });

  it('[SPEC §6] a retry sent while its original (the last message the limit allows) is still committing gets the original, over WS and HTTP, not rate_limited', async () => {
    clock.advance(61_000);
    const rosa = await t.token('rosa');
    const rosaId = t.userId(rosa);
    const sid = await t.sessionId(rosa);
    const a = await t.connect(sid, rosa);
    for (let i = 0; i < 8; i++) a.send({ type: 'message', message: `r${i}`, client_msg_id: `r-${i}` });
    await a.collect('new_message', (l) => l.filter((e) => e.message.user_id === rosaId).length >= 8);
    // The 9th and 10th of the minute, each sent again before its commit: the frames back to back, the POSTs at once.
    a.send({ type: 'message', message: 'ninth', client_msg_id: 'r-8' });
    a.send({ type: 'message', message: 'ninth', client_msg_id: 'r-8' });
    a.send({ type: 'message', message: 'ninth', client_msg_id: 'r-8' });
    const ninth = await a.collect(
      'new_message',
      (l) => l.filter((e) => e.message.client_msg_id === 'r-8').length >= 3,
    );
    expect(
      new Set(ninth.filter((e) => e.message.client_msg_id === 'r-8').map((e) => e.message.id)).size,
    ).toBe(1);
    const posts = await Promise.all(
      [0, 1, 2].map(() => post(t, rosa, { message: 'tenth', client_msg_id: 'r-9' })),
    );
    expect(posts.map((r) => r.status)).toEqual([201, 201, 201]);
    expect(new Set(posts.map((r) => r.body.id)).size).toBe(1);
    expect(a.events.filter((e) => e.type === 'error')).toEqual([]);
    const rosas = (await historyOf(t, rosa, sid)).filter((m) => m.user_id === rosaId);
    expect(rosas.map((m) => m.message)).toEqual([
      ...Array.from({ length: 8 }, (_, i) => `r${i}`),
      'ninth',
      'tenth',
    ]);
    a.close();
  });

  it('[SPEC §5, §6] an eager heart tapper (hearts over the limit for seconds on end) gets rate_limited with retry_after_ms and keeps the connection: refused hearts are not abuse (no 1008)', async () => {
    clock.advance(61_000);
    const tapper = await t.token('tapper');
    const sid = await t.sessionId(tapper);
    const before = (await t.request('GET', '/live-chat/status', { token: tapper })).body.session.total_likes;
    const a = await t.connect(sid, tapper);
    const refusals = () => a.events.filter((e) => e.type === 'error');
    // 50 at once (the burst), then 30 a second for 8 s: 20 of each second's go through, 10 are refused.
    for (let i = 0; i < 50; i++) a.send({ type: 'like' });
    await stillOpen(a);
    expect(refusals()).toEqual([]);
    for (let second = 1; second <= 8; second++) {
      clock.advance(1000);
      for (let i = 0; i < 30; i++) a.send({ type: 'like' });
      await a.collect('error', (l) => l.length >= second * 10);
    }
    expect(refusals()).toHaveLength(80);
    for (const e of refusals()) {
      expect(e.code).toBe('rate_limited');
      expect(e.retry_after_ms).toBeGreaterThan(0);
    }
    await stillOpen(a);
    expect(a.ws.readyState).toBe(a.ws.OPEN);
    const deadline = Date.now() + 5000;
    let total = before;
    while (total !== before + 210 && Date.now() < deadline) {
      await sleep(50);
      total = (await t.request('GET', '/live-chat/status', { token: tapper })).body.session.total_likes;
    }
    expect(total).toBe(before + 210);
    a.close();
  });

  it('[SPEC §5, §6] a message refused by the per-socket frame budget is answered rate_limited with its client_msg_id, so the client can mark it failed', async () => {
    clock.advance(61_000);
    const a = await t.connect(await t.sessionId(await t.token('framer')), await t.token('framer'));
    // The budget: bursts of 60 frames. 60 pings use it up; the message is the 61st frame.
    for (let i = 0; i < 60; i++) a.send({ type: 'ping' });
    a.send({ type: 'message', message: 'one frame too many', client_msg_id: 'framed-1' });
    const err = await a.next('error');
    expect(err).toMatchObject({ code: 'rate_limited', client_msg_id: 'framed-1' });
    expect(err.retry_after_ms).toBeGreaterThan(0);
    await a.collect('pong', (l) => l.length >= 60);
    clock.advance(1000);
    a.send({ type: 'message', message: 'one frame too many', client_msg_id: 'framed-1' });
    await a.next('new_message', (e) => e.message.client_msg_id === 'framed-1');
    a.close();
  });

  it('[SPEC §6] a retry at the limit whose original this node never saw (committed by another node, or gone from its memory) gets the original from the database, over HTTP and WS', async () => {
    clock.advance(61_000);
    const ruth = await t.token('ruth');
    const ruthId = t.userId(ruth);
    const sid = await t.sessionId(ruth);
    for (let i = 0; i < 10; i++) expect((await post(t, ruth, { message: `u${i}` })).status).toBe(201);
    // Another node commits ruth's earlier attempt; this one hears nothing of it (its bus is late, or the
    // message has left its in-memory list).
    const [elsewhere] = (
      await t.server.store.write({
        messages: [
          {
            sessionId: sid,
            userId: ruthId,
            username: 'ruth',
            profilePic: null,
            isHost: false,
            message: 'sent on another node',
            clientMsgId: 'ruth-x',
            createdAt: clock.now(),
          },
        ],
        hearts: [],
        messageLikes: [],
        viewers: [],
        users: [],
      })
    ).messages;
    const replay = await post(t, ruth, { message: 'sent on another node', client_msg_id: 'ruth-x' });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toMatchObject({
      id: elsewhere!.message.id,
      client_msg_id: 'ruth-x',
      user_id: ruthId,
    });
    const a = await t.connect(sid, ruth);
    a.send({ type: 'message', message: 'sent on another node', client_msg_id: 'ruth-x' });
    const answer = await a.next('new_message', (e) => e.message.client_msg_id === 'ruth-x');
    expect(answer.message.id).toBe(elsewhere!.message.id);
    expect(a.events.filter((e) => e.type === 'error')).toEqual([]);
    // A new message is still refused: the limit holds.
    a.send({ type: 'message', message: 'one more', client_msg_id: 'ruth-y' });
    expect(await a.next('error')).toMatchObject({ code: 'rate_limited', client_msg_id: 'ruth-y' });
    const ruths = (await historyOf(t, ruth, sid)).filter((m) => m.user_id === ruthId);
    expect(ruths.map((m) => m.message)).toEqual([
      ...Array.from({ length: 10 }, (_, i) => `u${i}`),
      'sent on another node',
    ]);
    a.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('message validation, winners and profiles (dev auth)', () => {
  let t: TestServer;
  let sid: number;

  beforeAll(async () => {
    t = await startServer({
      env: { LIVE_CHAT_ADMIN_API_KEY: ADMIN_KEY, LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000' },
    });
    sid = await t.sessionId(await t.token('someone'));
  });
  afterAll(() => t?.close());

  it('[SPEC §4] empty, too long and control-character messages are refused over HTTP and WS, nothing stored', async () => {
    const val = await t.token('val');
    const a = await t.connect(sid, val);
    const cases: Array<[string, string, string]> = [
      ['empty', '', 'invalid_message'],
      ['spaces only', '     ', 'invalid_message'],
      ['line breaks and spaces only', ' \n \r\n ', 'invalid_message'],
      ['501 code points', 'x'.repeat(501), 'message_too_long'],
      ['501 emoji', '😀'.repeat(501), 'message_too_long'],
      ['BEL', 'ding \u0007', 'invalid_message'],
      ['NUL', 'a\u0000b', 'invalid_message'],
      ['ESC', '\u001b[31mred', 'invalid_message'],
      ['DEL', 'a\u007fb', 'invalid_message'],
    ];
    for (const [i, [label, text, code]] of cases.entries()) {
      const http = await post(t, val, { message: text });
      expect(http.status, label).toBe(400);
      expect(http.body.error.code, label).toBe(code);

      a.send({ type: 'message', message: text, client_msg_id: `bad-${i}` });
      const err = await a.next('error');
      expect(err, label).toMatchObject({ code, client_msg_id: `bad-${i}` });
    }
    await stillOpen(a);
    expect((await historyOf(t, val, sid)).filter((m) => m.user_id === t.userId(val))).toEqual([]);
    a.close();
  });

  it('[SPEC §4] 500 emoji fit; line breaks are kept; markup and SQL are stored verbatim', async () => {
    const vera = await t.token('vera');
    const a = await t.connect(sid, vera);
    const texts = [
      '😀'.repeat(500),
      'line one\nline two\n\nline four',
      '<img src=x onerror=alert(1)>',
      "'; DROP TABLE live_chat_messages; --",
    ];
    for (const [i, text] of texts.entries()) {
      const http = await post(t, vera, { message: text });
      expect(http.status, text).toBe(201);
      expect(http.body.message).toBe(text);
      a.send({ type: 'message', message: text, client_msg_id: `ok-${i}` });
      const live = await a.next('new_message', (e) => e.message.client_msg_id === `ok-${i}`);
      expect(live.message.message).toBe(text);
    }
    const mine = (await historyOf(t, vera, sid)).filter((m) => m.user_id === t.userId(vera));
    expect(mine.map((m) => m.message)).toEqual(texts.flatMap((x) => [x, x]));
    a.close();
  });

  it('[SPEC §2] identity comes from the token only: user_id and friends in the payload are ignored', async () => {
    const mallory = await t.token('mallory');
    const victimId = t.userId(await t.token('victim'));
    const spoof = { user_id: victimId, username: 'victim', is_host: true, is_winner: true };
    const http = await post(t, mallory, { message: 'spoof over http', ...spoof });
    expect(http.status).toBe(201);
    expect(http.body).toMatchObject({
      user_id: t.userId(mallory),
      username: 'mallory',
      is_host: false,
      is_winner: false,
    });
    const a = await t.connect(sid, mallory);
    a.send({ type: 'message', message: 'spoof over ws', client_msg_id: 'spoof-1', ...spoof });
    const live = await a.next('new_message', (e) => e.message.client_msg_id === 'spoof-1');
    expect(live.message).toMatchObject({ user_id: t.userId(mallory), username: 'mallory', is_host: false });
    const victims = (await historyOf(t, mallory, sid)).filter((m) => m.user_id === victimId);
    expect(victims).toEqual([]);
    a.close();
  });

  it('[SPEC §4, §5] a bad client_msg_id is bad_request; 64 printable characters are fine', async () => {
    const cid = await t.token('cid');
    const a = await t.connect(sid, cid);
    for (const bad of ['x'.repeat(65), 'has spaces', '', 'tab\there', 'ünïcode']) {
      const http = await post(t, cid, { message: `bad id ${JSON.stringify(bad)}`, client_msg_id: bad });
      expect(http.status, bad).toBe(400);
      expect(http.body.error.code, bad).toBe('bad_request');
      a.send({ type: 'message', message: `bad id ${JSON.stringify(bad)}`, client_msg_id: bad });
      const err = await a.next('error');
      expect(err.code, bad).toBe('bad_request');
      expect(err.client_msg_id, bad).toBeUndefined();
    }
    const longest = 'y'.repeat(64);
    const ok = await post(t, cid, { message: 'longest id', client_msg_id: longest });
    expect(ok.status).toBe(201);
    expect(ok.body.client_msg_id).toBe(longest);
    const mine = (await historyOf(t, cid, sid)).filter((m) => m.user_id === t.userId(cid));
    expect(mine.map((m) => m.message)).toEqual(['longest id']);
    a.close();
  });

  it('[SPEC §2, §4] winners are set by a HOST or the admin key only; unknown session 404', async () => {
    const walt = await t.token('walt');
    const host = await t.token('hostess', { roles: ['host'] });
    const body = { user_ids: [t.userId(walt)] };
    const path = `/live-chat/sessions/${sid}/winners`;

    const viewer = await t.request('POST', path, { token: walt, body });
    expect(viewer.status).toBe(403);
    expect(viewer.body.error.code).toBe('forbidden');
    const anonymous = await t.request('POST', path, { body });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe('unauthorized');
    const wrongKey = await t.request('POST', path, { headers: { 'x-admin-key': 'z'.repeat(32) }, body });
    expect(wrongKey.status).toBe(401);
    expect(wrongKey.body.error.code).toBe('unauthorized');
    // A wrong key is not rescued by a valid host token next to it.
    const wrongKeyWithToken = await t.request('POST', path, {
      token: host,
      headers: { 'x-admin-key': 'z'.repeat(32) },
      body,
    });
    expect(wrongKeyWithToken.status).toBe(401);

    const byHost = await t.request('POST', path, { token: host, body });
    expect(byHost.status).toBe(200);
    expect(byHost.body).toEqual({ session_id: sid, user_ids: body.user_ids });
    const byAdmin = await t.request('POST', path, {
      headers: { 'x-admin-key': ADMIN_KEY },
      body: { user_ids: [] },
    });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toEqual({ session_id: sid, user_ids: [] });

    const unknown = await t.request('POST', '/live-chat/sessions/999999/winners', {
      headers: { 'x-admin-key': ADMIN_KEY },
      body,
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');

    // Moderation leaves a record of who did it: winners set, and a message deleted.
    const sent = await post(t, walt, { message: 'to be moderated' });
    expect((await t.request('DELETE', `/live-chat/messages/${sent.body.id}`, { token: host })).status).toBe(
      200,
    );
    const records = t.logs
      .map((l) => JSON.parse(l))
      .filter((l) => l.msg === 'winners set' || l.msg === 'message deleted')
      .slice(-3)
      .map((l) => [l.msg, l.by, l.winners ?? l.message]);
    expect(records).toEqual([
      ['winners set', t.userId(host), body.user_ids],
      ['winners set', 'admin key', []],
      ['message deleted', t.userId(host), sent.body.id],
    ]);
  });

  it('[SPEC §2, §5] a WINNER badge reaches old and new messages live, and init on reconnect', async () => {
    const winona = await t.token('winona');
    const winonaId = t.userId(winona);
    const watcherToken = await t.token('watcher');
    const old = await post(t, winona, { message: 'before the draw' });
    expect(old.body.is_winner).toBe(false);

    const watcher = await t.connect(sid, watcherToken);
    const set = await t.request('POST', `/live-chat/sessions/${sid}/winners`, {
      headers: { 'x-admin-key': ADMIN_KEY },
      body: { user_ids: [winonaId] },
    });
    expect(set.status).toBe(200);
    expect(await watcher.next('winner_update')).toMatchObject({ session_id: sid, user_ids: [winonaId] });

    const hist = await historyOf(t, watcherToken, sid);
    expect(hist.find((m) => m.id === old.body.id)).toMatchObject({ is_winner: true });
    expect(hist.filter((m) => m.user_id !== winonaId).every((m) => m.is_winner === false)).toBe(true);

    const fresh = await post(t, winona, { message: 'I won!' });
    expect(fresh.body.is_winner).toBe(true);
    const live = await watcher.next('new_message', (e) => e.message.id === fresh.body.id);
    expect(live.message.is_winner).toBe(true);

    const w = await t.connect(sid, winona);
    expect(w.init!.you).toMatchObject({ user_id: winonaId, is_winner: true });
    expect(w.init!.messages.find((m: any) => m.id === old.body.id)).toMatchObject({ is_winner: true });
    const again = await t.connect(sid, watcherToken);
    expect(again.init!.you.is_winner).toBe(false);
    watcher.close();
    w.close();
    again.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('frames and bodies (LIVE_CHAT_MAX_FRAME_BYTES=2048)', () => {
  let t: TestServer;
  let token: string;
  let sid: number;

  beforeAll(async () => {
    t = await startServer({ env: { LIVE_CHAT_MAX_FRAME_BYTES: '2048' } });
    token = await t.token('frank');
    sid = await t.sessionId(token);
  });
  afterAll(() => t?.close());

  it('[SPEC §5, §7] a WebSocket frame of exactly the limit is fine; one byte more closes 1009', async () => {
    const a = await t.connect(sid, token);
    const frame = (bytes: number) => {
      const head = '{"type":"ping","pad":"';
      return `${head}${'x'.repeat(bytes - head.length - 2)}"}`;
    };
    a.send(frame(2048));
    await a.next('pong');
    a.send(frame(2049));
    expect((await within(a.closed, 5000, 'close after a large frame')).code).toBe(1009);

    const b = await t.connect(sid, token);
    b.send({ type: 'message', message: 'x'.repeat(2100) });
    expect((await within(b.closed, 5000, 'close after a large message')).code).toBe(1009);
    expect((await historyOf(t, token, sid)).filter((m) => m.message.startsWith('xxx'))).toEqual([]);
  });

  it('[SPEC §7] an HTTP body over the limit gets 413 payload_too_large', async () => {
    const res = await post(t, token, { message: 'y'.repeat(3000) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
    expect((await historyOf(t, token, sid)).filter((m) => m.message.startsWith('yyy'))).toEqual([]);
  });

  it('[SPEC §4] a POST that is not JSON gets 415 unsupported_media_type', async () => {
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data']) {
      const res = await t.request('POST', '/live-chat/messages', {
        token,
        headers: { 'content-type': contentType },
        rawBody: 'message=hello',
      });
      expect(res.status, contentType).toBe(415);
      expect(res.body.error.code, contentType).toBe('unsupported_media_type');
    }
    expect((await historyOf(t, token, sid)).filter((m) => m.message.includes('hello'))).toEqual([]);
  });

  it('[SPEC §5] a binary frame gets bad_request; the connection stays open', async () => {
    const a = await t.connect(sid, token);
    a.ws.send(Buffer.from(JSON.stringify({ type: 'message', message: 'in binary' })), { binary: true });
    expect((await a.next('error')).code).toBe('bad_request');
    await stillOpen(a);
    expect((await historyOf(t, token, sid)).filter((m) => m.message === 'in binary')).toEqual([]);
    a.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('Origin allow-list (CORS_ORIGINS=https://app.example.com)', () => {
  const allowed = 'https://app.example.com';
  let t: TestServer;
  let token: string;
  let sid: number;

  beforeAll(async () => {
    t = await startServer({ env: { CORS_ORIGINS: allowed } });
    token = await t.token('olivia');
    sid = await t.sessionId(token);
  });
  afterAll(() => t?.close());

  it('[SPEC §5, §7] a handshake from a foreign Origin closes 1008', async () => {
    for (const origin of [
      'https://evil.example.com',
      'https://app.example.com.evil.com',
      'null',
      'http://app.example.com',
      'https://app.example.com:8443',
    ]) {
      expect(await refusedWith(t, sid, token, { origin }), origin).toBe(1008);
    }
  });

  it('[SPEC §7] the allowed Origin, and no Origin at all, get init', async () => {
    const browser = await t.connect(sid, token, { origin: allowed });
    expect(browser.init!.type).toBe('init');
    const cli = await t.connect(sid, token);
    expect(cli.init!.type).toBe('init');
    browser.close();
    cli.close();
  });

  it('[SPEC §7] HTTP CORS: a preflight from the allowed origin is answered, a foreign one is not', async () => {
    const preflight = (origin: string) =>
      t.request('OPTIONS', '/live-chat/messages', {
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type',
        },
      });
    const ok = await preflight(allowed);
    expect(ok.status).toBeLessThan(300);
    expect(ok.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(ok.headers.get('access-control-allow-methods')).toContain('POST');
    const foreign = await preflight('https://evil.example.com');
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();

    const get = await t.request('GET', '/live-chat/status', { token, headers: { origin: allowed } });
    expect(get.headers.get('access-control-allow-origin')).toBe(allowed);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('connection cap (LIVE_CHAT_MAX_CONNECTIONS_PER_USER=2)', () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startServer({ env: { LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '2' } });
  });
  afterAll(() => t?.close());

  it('[SPEC §5, §7] the 3rd socket of a user closes 4429; others are unaffected; a freed slot is reusable', async () => {
    const carl = await t.token('carl');
    const dora = await t.token('dora');
    const sid = await t.sessionId(carl);
    const c1 = await t.connect(sid, carl);
    const c2 = await t.connect(sid, carl);
    expect(await refusedWith(t, sid, carl)).toBe(4429);
    const d = await t.connect(sid, dora);
    expect(d.init!.you.username).toBe('dora');
    await stillOpen(c1);
    await stillOpen(c2);

    c1.close();
    await c1.closed;
    const carlId = t.userId(carl);
    const deadline = Date.now() + 2000;
    while (t.server.service.hub.userConnectionCount(carlId) >= 2 && Date.now() < deadline) await sleep(10);
    const c3 = await t.connect(sid, carl);
    expect(c3.init!.you.user_id).toBe(carlId);
    expect(await refusedWith(t, sid, carl)).toBe(4429);
    c2.close();
    c3.close();
    d.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('sessions over the WebSocket (manual clock)', () => {
  let t: TestServer;
  let clock: ManualClock;

  beforeAll(async () => {
    clock = new ManualClock(midWindow());
    t = await startServer({ clock });
  });
  afterAll(() => t?.close());

  it('[SPEC §5] unknown or malformed session ids close 4404', async () => {
    const token = await t.token('sam');
    for (const id of ['999999', 'abc', '..%2Fx', '0', '-1', '1.5', '99999999999999999999']) {
      expect(await refusedWith(t, id, token), id).toBe(4404);
    }
  });

  it('[issue 5] a chat socket handshake is upgraded without Fastify’s router; any other upgrade request still goes through it', async () => {
    const token = await t.token('quick');
    const sid = await t.sessionId(token);
    // @fastify/websocket hands every upgrade request it gets to `app.routing` (plain HTTP requests do not pass
    // there): wrapped, it shows which handshakes took the slow way.
    const app = t.server.app as unknown as { routing: (req: { url: string }, res: unknown) => void };
    const routing = app.routing;
    const routed: string[] = [];
    app.routing = function (this: unknown, req, res) {
      routed.push(req.url);
      return routing.call(this, req, res);
    };
    try {
      const client = await t.connect(sid, token, { query: 'batch=1&since=0' });
      expect(client.events[0]?.type).toBe('init');
      client.close();
      expect(routed).toEqual([]);
      expect(await refusedWith(t, `0${sid}`, token)).toBe(4404);
      expect(routed.map((url) => url.split('?')[0])).toEqual([`/live-chat/ws/0${sid}`]);
    } finally {
      app.routing = routing;
    }
  });

  it('[issue 5] the 101 goes out in one write with what follows it: `init`, or the close frame of a refusal', async () => {
    const token = await t.token('onewrite');
    const sid = await t.sessionId(token);
    // What the server hands the kernel for one TCP connection, one entry per write (`_write`/`_writev`).
    const firstWrites = (query: string, until: (writes: Buffer[]) => boolean) =>
      new Promise<Buffer[]>((resolve, reject) => {
        const writes: Buffer[] = [];
        t.server.app.server.once('connection', (socket: Socket) => {
          const spied = socket as unknown as Record<'_write' | '_writev', (...args: any[]) => unknown>;
          const write = spied._write;
          const writev = spied._writev;
          spied._write = function (this: unknown, chunk: Buffer | string, ...rest: unknown[]) {
            writes.push(Buffer.from(chunk));
            return write.call(this, chunk, ...rest);
          };
          spied._writev = function (this: unknown, chunks: Array<{ chunk: Buffer | string }>, cb: unknown) {
            writes.push(Buffer.concat(chunks.map((c) => Buffer.from(c.chunk))));
            return writev.call(this, chunks, cb);
          };
        });
        const client = new WebSocket(`${t.url.replace(/^http/, 'ws')}/live-chat/ws/${sid}?${query}`);
        client.on('error', reject);
        client.on('close', () => resolve(writes));
        client.on('message', () => {
          if (until(writes)) client.close();
        });
      });

    const opened = await firstWrites(`token=${token}`, (w) => w.length > 0);
    const first = opened[0]!.toString('latin1');
    expect(first.startsWith('HTTP/1.1 101 '), first).toBe(true);
    const frames = first.slice(first.indexOf('\r\n\r\n') + 4);
    expect(frames, 'the init frame, in the same write').toMatch(/^\x81.{1,3}\{"type":"init",/s);

    const refused = await firstWrites('token=not-a-jwt', () => false);
    const head = refused[0]!;
    expect(head.toString('latin1').startsWith('HTTP/1.1 101 ')).toBe(true);
    const close = head.subarray(head.indexOf('\r\n\r\n') + 4);
    expect(close[0], 'the close frame, in the same write').toBe(0x88);
    expect(close.readUInt16BE(2)).toBe(4401);
  });

  it('[SPEC §3, §5] when the window ends: chat_closed then 4409; the old session refuses 4409; history stays', async () => {
    const token = await t.token('sally');
    const sid = await t.sessionId(token);
    const a = await t.connect(sid, token);
    a.send({ type: 'message', message: 'said before closing', client_msg_id: 'late-1' });
    const said = await a.next('new_message', (e) => e.message.client_msg_id === 'late-1');

    clock.advance(2 * HOUR);
    expect(await a.next('chat_closed')).toMatchObject({ session_id: sid, reason: 'window_ended' });
    expect((await within(a.closed, 5000, 'close after chat_closed')).code).toBe(4409);

    expect(await refusedWith(t, sid, token)).toBe(4409);
    const closed = await post(t, token, { message: 'too late', session_id: sid });
    expect(closed.status).toBe(409);
    expect(closed.body.error.code).toBe('chat_closed');

    const history = await historyOf(t, token, sid);
    expect(history.map((m) => m.id)).toContain(said.message.id);
    expect(history.map((m) => m.message)).not.toContain('too late');
    // A new window is open now, with a new session.
    expect(await t.sessionId(token)).toBeGreaterThan(sid);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('LIVE_CHAT_ENABLED=false', () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startServer({ env: { LIVE_CHAT_ENABLED: 'false', LIVE_CHAT_ADMIN_API_KEY: ADMIN_KEY } });
  });
  afterAll(() => t?.close());

  it('[SPEC §3] every write is refused with chat_disabled, the draw backend’s and a HOST’s too', async () => {
    const host = await t.token('dora', { roles: ['host'] });
    const admin = { 'x-admin-key': ADMIN_KEY };
    const writes: Array<
      [string, string, { token?: string; body?: unknown; headers?: Record<string, string> }]
    > = [
      ['POST', '/live-chat/like-message/1', { token: host }],
      ['DELETE', '/live-chat/like-message/1', { token: host }],
      ['DELETE', '/live-chat/messages/1', { headers: admin }],
      ['POST', '/live-chat/sessions/1/winners', { headers: admin, body: { user_ids: ['someone'] } }],
      ['POST', '/live-chat/sessions/1/winners', { token: host, body: { user_ids: [] } }],
      ['PUT', '/live-chat/users/someone', { headers: admin, body: { username: 'Someone' } }],
    ];
    for (const [method, path, options] of writes) {
      const res = await t.request(method, path, options);
      expect(res.status, `${method} ${path}`).toBe(503);
      expect(res.body.error.code, `${method} ${path}`).toBe('chat_disabled');
    }
    const history = await t.request('GET', '/live-chat/messages', { headers: admin });
    expect(history.status, 'reads stay open').toBe(200);
  });

  it('[SPEC §3, §7] status says so, writes get chat_disabled, the WebSocket closes 4409', async () => {
    const token = await t.token('dina');
    const status = await t.request('GET', '/live-chat/status', { token });
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ enabled: false, is_active: false, session: null });

    const sent = await post(t, token, { message: 'anyone?' });
    expect(sent.status).toBe(503);
    expect(sent.body.error.code).toBe('chat_disabled');
    const liked = await t.request('POST', '/live-chat/like', { token });
    expect(liked.status).toBe(503);
    expect(liked.body.error.code).toBe('chat_disabled');

    expect(await refusedWith(t, 1, token)).toBe(4409);
  });
});

describe('dev auth with AUTH_HOST_ROLE=moderator', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startServer({ env: { AUTH_HOST_ROLE: 'moderator' } });
  });
  afterAll(() => t?.close());

  it('[SPEC §2] POST /live-chat/dev/token with roles ["host"] (the demo page’s "Join as host") makes a HOST whatever the host role is called', async () => {
    const mint = async (body: unknown) => {
      const r = await t.request('POST', '/live-chat/dev/token', { body });
      expect(r.status).toBe(200);
      return r.body.token as string;
    };
    const sid = await t.sessionId(await mint({ username: 'anyone' }));
    for (const [username, roles, isHost] of [
      ['hosting-by-name', ['host'], true],
      ['hosting-by-role', ['moderator'], true],
      ['just-watching', [], false],
    ] as const) {
      const c = await t.connect(sid, await mint({ username, roles }));
      expect(c.init!.you.is_host, username).toBe(isHost);
      c.close();
    }
  });
});

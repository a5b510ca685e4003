import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { CLOCK_TOLERANCE_S } from '../../src/http/auth/verifier.js';
import type { KyselyChatStore } from '../../src/store/kysely-store.js';
import {
  expectNoSecretsLogged,
  JwksServer,
  type Node,
  type RsaKey,
  rsaKey,
  secret,
  signJws,
  sleep,
  startNode,
  waitFor,
  within,
} from './support.js';

// Issue 6, handshake and auth, from the attacker's side: real servers in JWKS mode (not dev auth), a real JWKS
// endpoint on 127.0.0.1, real sockets. Each refusal is checked where it matters: the close code, nothing stored,
// no user row created, no key fetch caused.

const ISSUER = 'https://issuer.hardening.test';
const AUDIENCE = 'draw-chat';
const ALLOWED_ORIGIN = 'https://app.example.com';
const nowS = () => Math.floor(Date.now() / 1000);

let jwks: JwksServer;
let key: RsaKey;
let node: Node;
let sid: number;
let good: string;

const claims = (sub: string, extra: Record<string, unknown> = {}) => ({
  sub,
  iss: ISSUER,
  aud: AUDIENCE,
  iat: nowS(),
  exp: nowS() + 3600,
  ...extra,
});
const tokenFor = (sub: string, extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}) =>
  signJws({ alg: 'RS256', typ: 'JWT', kid: key.kid, ...header }, claims(sub, extra), { rsa: key.privateKey });

/** Opens a socket the server must refuse; the close code (or `HTTP nnn` when the upgrade itself is refused). */
async function refusal(
  n: Node,
  session: number | string,
  token: string | undefined,
  options: { origin?: string; query?: string } = {},
): Promise<number | string> {
  let client: Awaited<ReturnType<Node['connect']>>;
  try {
    client = await n.connect(session, token, { ...options, waitForInit: false });
  } catch (err) {
    const m = /HTTP (\d{3})/.exec(String(err));
    if (m) return `HTTP ${m[1]}`;
    throw err;
  }
  const { code } = await within(
    client.closed,
    5000,
    `close of /live-chat/ws/${String(session).slice(0, 40)}`,
  );
  expect(
    client.events.map((e) => e.type),
    'no init before the close',
  ).not.toContain('init');
  return code;
}

async function userRows(n: Node, idPrefix: string): Promise<number> {
  const db = (n.server.store as KyselyChatStore).db;
  const row = await db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('id', 'like', `${idPrefix}%`)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

async function messagesContaining(n: Node, text: string): Promise<number> {
  const db = (n.server.store as KyselyChatStore).db;
  const row = await db
    .selectFrom('live_chat_messages')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('message', 'like', `%${text}%`)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Refused everywhere a token is taken: HTTP 401 on read and write, WebSocket 4401; nothing of it stored. */
async function expectRefusedEverywhere(token: string | undefined, label: string): Promise<void> {
  const status = await node.request('GET', '/live-chat/status', { token });
  expect(status.status, label).toBe(401);
  expect(status.body.error.code, label).toBe('unauthorized');
  const marker = `forged-${randomBytes(4).toString('hex')}`;
  const sent = await node.request('POST', '/live-chat/messages', { token, body: { message: marker } });
  expect(sent.status, label).toBe(401);
  expect(await refusal(node, sid, token), label).toBe(4401);
  expect(await messagesContaining(node, marker), label).toBe(0);
}

beforeAll(async () => {
  key = rsaKey('hard-key-1');
  jwks = new JwksServer();
  jwks.keys = [key.publicJwk];
  await jwks.start();
  node = await startNode({
    env: {
      AUTH_JWKS_URL: jwks.url,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      CORS_ORIGINS: ALLOWED_ORIGIN,
      LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100000',
    },
  });
  good = tokenFor('hard-good', { name: 'Good' });
  sid = await node.sessionId(good);
});

afterAll(async () => {
  await node?.close();
  await jwks?.stop();
  expectNoSecretsLogged();
});

describe('handshake and auth (issue 6)', () => {
  it('[H-AUTH-01] no token (absent, empty, `Bearer` alone) → HTTP 401 and close 4401; no user row, nothing stored', async () => {
    expect(await refusal(node, sid, undefined)).toBe(4401);
    expect(await refusal(node, sid, '')).toBe(4401);
    for (const authorization of ['Bearer', 'Bearer ', 'Basic Zm9vOmJhcg==', 'bearer\t']) {
      const r = await node.request('GET', '/live-chat/status', { headers: { authorization } });
      expect(r.status, authorization).toBe(401);
    }
    await expectRefusedEverywhere(undefined, 'no token');
    // A token in the query string is a WebSocket thing only; HTTP wants the header.
    const viaQuery = await node.request('GET', `/live-chat/status?token=${good}`);
    expect(viaQuery.status).toBe(401);
  });

  it('[H-AUTH-02] `alg: none` (none/None/NONE, empty or junk signature) → 4401 without a JWKS request', async () => {
    const before = jwks.requests.length;
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const unsigned = signJws({ alg, typ: 'JWT', kid: key.kid }, claims('hard-none'), 'none');
      await expectRefusedEverywhere(unsigned, `alg ${alg}`);
      await expectRefusedEverywhere(
        secret(`${unsigned}${randomBytes(32).toString('base64url')}`),
        `alg ${alg}+sig`,
      );
    }
    expect(jwks.requests.length).toBe(before);
    expect(await userRows(node, 'hard-none')).toBe(0);
  });

  it('[H-AUTH-03] HS256 signed with the RSA public key (PEM, DER, JWK n) → 4401, nothing stored, no user row', async () => {
    const secrets: Array<[string, Buffer | string]> = [
      ['PEM', key.publicKey.export({ type: 'spki', format: 'pem' })],
      ['DER', key.publicKey.export({ type: 'spki', format: 'der' })],
      ['JWK n', String(key.publicJwk.n)],
      ['JWK JSON', JSON.stringify(key.publicJwk)],
    ];
    for (const [label, hmac] of secrets) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        await expectRefusedEverywhere(
          signJws({ alg, typ: 'JWT', kid: key.kid }, claims('hard-hs', { roles: ['host'] }), { hmac }),
          `${alg} keyed with ${label}`,
        );
      }
    }
    expect(await userRows(node, 'hard-hs')).toBe(0);
  });

  it('[H-AUTH-04] 1,000 random unknown `kid`s → all refused with at most 1 JWKS request (30 s cooldown)', async () => {
    const stranger = rsaKey('stranger');
    const before = jwks.requests.length;
    const started = Date.now();
    const tokens = Array.from({ length: 1000 }, () =>
      signJws({ alg: 'RS256', kid: randomBytes(12).toString('hex') }, claims('hard-kid'), {
        rsa: stranger.privateKey,
      }),
    );
    for (let i = 0; i < tokens.length; i += 100) {
      const batch = await Promise.all(
        tokens.slice(i, i + 100).map((token) => node.request('GET', '/live-chat/status', { token })),
      );
      for (const r of batch) expect(r.status).toBe(401);
    }
    // And over the socket, for good measure.
    for (const token of tokens.slice(0, 20)) expect(await refusal(node, sid, token)).toBe(4401);
    expect(jwks.requests.length - before).toBeLessThanOrEqual(1);
    expect(Date.now() - started).toBeLessThan(20_000);
    // The real key still verifies (a fresh token, so no cache hit), without another request.
    const after = jwks.requests.length;
    expect((await node.request('GET', '/live-chat/status', { token: tokenFor('hard-kid-ok') })).status).toBe(
      200,
    );
    expect(jwks.requests.length).toBe(after);
  });

  it(`[H-AUTH-05] \`exp\` ${CLOCK_TOLERANCE_S} s tolerance to the millisecond: accepted at exp+4.999 s, refused at exp+5.000 s (manual clock)`, async () => {
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    const clock = new ManualClock(t0);
    const timed = await startNode({ clock, env: { AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER } });
    try {
      const exp = t0 / 1000 - 60;
      const tokenAt = (sub: string) =>
        signJws(
          { alg: 'RS256', kid: key.kid },
          { sub, iss: ISSUER, exp, iat: exp - 600 },
          { rsa: key.privateKey },
        );
      clock.set(exp * 1000 + CLOCK_TOLERANCE_S * 1000 - 1);
      const inside = tokenAt('hard-exp-inside');
      expect((await timed.request('GET', '/live-chat/status', { token: inside })).status).toBe(200);
      clock.set(exp * 1000 + CLOCK_TOLERANCE_S * 1000);
      // The same token, now out of tolerance: the verified-token cache must not keep it alive.
      expect((await timed.request('GET', '/live-chat/status', { token: inside })).status).toBe(401);
      const outside = tokenAt('hard-exp-outside');
      expect((await timed.request('GET', '/live-chat/status', { token: outside })).status).toBe(401);
      expect(await refusal(timed, 1, outside)).toBe(4401);
      expect(await userRows(timed, 'hard-exp-outside')).toBe(0);
    } finally {
      await timed.close();
    }
  });

  it('[H-AUTH-06] a future `nbf`: +60 s refused (4401), +5 s (inside the tolerance) accepted, +6 s refused', async () => {
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    const clock = new ManualClock(t0);
    const timed = await startNode({ clock, env: { AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER } });
    try {
      const at = (sub: string, nbf: number) =>
        signJws(
          { alg: 'RS256', kid: key.kid },
          { sub, iss: ISSUER, nbf, exp: t0 / 1000 + 3600 },
          { rsa: key.privateKey },
        );
      const s = await timed.sessionId(at('hard-nbf-probe', t0 / 1000));
      expect(await refusal(timed, s, at('hard-nbf-60', t0 / 1000 + 60))).toBe(4401);
      expect(
        (await timed.request('GET', '/live-chat/status', { token: at('hard-nbf-5', t0 / 1000 + 5) })).status,
      ).toBe(200);
      expect(
        (await timed.request('GET', '/live-chat/status', { token: at('hard-nbf-6', t0 / 1000 + 6) })).status,
      ).toBe(401);
      expect(await userRows(timed, 'hard-nbf-6')).toBe(0);
      expect(await userRows(timed, 'hard-nbf-60')).toBe(0);
    } finally {
      await timed.close();
    }
  });

  it('[H-AUTH-07] a foreign, missing, look-alike or non-string issuer → 4401 and 401, no user row', async () => {
    for (const iss of [
      'https://evil.test',
      `${ISSUER}.evil.test`,
      `${ISSUER}/`,
      ISSUER.toUpperCase(),
      '',
      42,
      [ISSUER],
    ]) {
      await expectRefusedEverywhere(tokenFor('hard-iss', { iss }), `iss ${JSON.stringify(iss)}`);
    }
    const { iss: _dropped, ...noIss } = claims('hard-iss');
    await expectRefusedEverywhere(
      signJws({ alg: 'RS256', kid: key.kid }, noIss, { rsa: key.privateKey }),
      'no iss',
    );
    expect(await userRows(node, 'hard-iss')).toBe(0);
  });

  it('[H-AUTH-08] with AUTH_AUDIENCE set: missing, foreign or look-alike `aud` → 4401; an array holding ours → accepted', async () => {
    const { aud: _dropped, ...noAud } = claims('hard-aud');
    await expectRefusedEverywhere(
      signJws({ alg: 'RS256', kid: key.kid }, noAud, { rsa: key.privateKey }),
      'no aud',
    );
    for (const aud of ['another-app', `${AUDIENCE}-admin`, ['another-app'], [], '']) {
      await expectRefusedEverywhere(tokenFor('hard-aud', { aud }), `aud ${JSON.stringify(aud)}`);
    }
    expect(await userRows(node, 'hard-aud')).toBe(0);
    const listed = tokenFor('hard-aud-listed', { aud: ['another-app', AUDIENCE] });
    const client = await node.connect(sid, listed);
    expect(client.init?.you.user_id).toBe('hard-aud-listed');
    client.close();
  });

  it('[H-AUTH-09] a Descope refresh token (`drn: "DSR"`) is refused as a session token: handshake 4401, HTTP 401, `auth` refresh refused', async () => {
    const refresh = tokenFor('hard-refresh', { drn: 'DSR' });
    await expectRefusedEverywhere(refresh, 'refresh token');
    expect(await userRows(node, 'hard-refresh')).toBe(0);
    // As an `auth` refresh on an open socket of the same user: refused, the socket keeps its old token.
    const client = await node.connect(sid, tokenFor('hard-refresh'));
    client.send({ type: 'auth', token: refresh });
    expect((await client.next('error')).code).toBe('unauthorized');
    client.send({ type: 'ping' });
    await client.next('pong');
    client.close();
  });

  it('[H-AUTH-10] `jku`, `x5u`, `x5c` and embedded `jwk` headers are ignored: 4401, and no request reaches the named host', async () => {
    const attacker = rsaKey('attacker-key');
    const hits: string[] = [];
    const trap: Server = createServer((req, res) => {
      hits.push(req.url ?? '');
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: [attacker.publicJwk] }));
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
    const trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
    try {
      const x5c = [Buffer.from('not really a certificate').toString('base64')];
      const headers: Array<Record<string, unknown>> = [
        { kid: 'attacker-key', jku: `${trapUrl}/jwks` },
        { kid: 'attacker-key', x5u: `${trapUrl}/cert.pem` },
        { kid: 'attacker-key', jwk: attacker.publicJwk },
        { kid: 'attacker-key', x5c },
        // The real kid with the attacker's key named beside it: the real key is used; the signature fails.
        { kid: key.kid, jku: `${trapUrl}/jwks`, jwk: attacker.publicJwk, x5u: `${trapUrl}/c` },
      ];
      for (const h of headers) {
        const forged = signJws({ alg: 'RS256', typ: 'JWT', ...h }, claims('hard-jku', { roles: ['host'] }), {
          rsa: attacker.privateKey,
        });
        await expectRefusedEverywhere(forged, JSON.stringify(Object.keys(h)));
      }
      await sleep(200);
      expect(hits).toEqual([]);
      expect(await userRows(node, 'hard-jku')).toBe(0);
    } finally {
      trap.closeAllConnections();
      await new Promise<void>((resolve) => trap.close(() => resolve()));
    }
  });

  it('[H-AUTH-11] absurd `kid` values (path traversal, 4 KB, NUL, `__proto__`, numbers, objects, null) → 4401, ≤ 1 JWKS request, server unharmed', async () => {
    const before = jwks.requests.length;
    const kids: unknown[] = [
      '',
      ' ',
      '../../../../etc/passwd',
      '..%2F..%2Fetc%2Fpasswd',
      'k'.repeat(4096),
      '\u0000',
      '__proto__',
      'constructor',
      'toString',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Log4Shell-shaped kid, on purpose
      '${jndi:ldap://127.0.0.1/x}',
      "' OR '1'='1",
      '\u202e\u0644',
      42,
      -1,
      1e308,
      true,
      null,
      { $ne: '' },
      [key.kid],
      { toString: key.kid },
    ];
    for (const kid of kids) {
      const forged = signJws({ alg: 'RS256', kid }, claims('hard-kidjunk'), { rsa: key.privateKey });
      const r = await node.request('GET', '/live-chat/status', { token: forged });
      expect(r.status, `kid ${JSON.stringify(kid)?.slice(0, 40)}`).toBe(401);
      expect(await refusal(node, sid, forged)).toBe(4401);
    }
    expect(jwks.requests.length - before).toBeLessThanOrEqual(1);
    expect(Object.prototype).not.toHaveProperty('$ne');
    expect(await userRows(node, 'hard-kidjunk')).toBe(0);
    expect((await node.request('GET', '/live-chat/status', { token: good })).status).toBe(200);
  });

  it('[H-AUTH-12] a token expiring on an open socket: 4401 within 1.5 s of `exp`; expired, refresh-type, oversized or foreign-audience `auth` frames do not extend it, a fresh token of the same user does', async () => {
    const exp = nowS() + 2;
    const lapsing = await node.connect(sid, tokenFor('hard-lapse', { exp }));
    // The one way to stay: a fresh token of the same user before `exp`.
    const refreshed = await node.connect(sid, tokenFor('hard-refreshed', { exp }));
    refreshed.send({ type: 'auth', token: tokenFor('hard-refreshed', { exp: nowS() + 600 }) });
    // Refresh attempts that must not extend the socket: an already expired token of the same user, a refresh
    // token, a token over 8 KB, and a token of the same user for another audience.
    lapsing.send({ type: 'auth', token: tokenFor('hard-lapse', { exp: nowS() - 60 }) });
    expect((await lapsing.next('error')).code).toBe('unauthorized');
    lapsing.send({ type: 'auth', token: tokenFor('hard-lapse', { drn: 'DSR' }) });
    expect((await lapsing.next('error')).code).toBe('unauthorized');
    lapsing.send({ type: 'auth', token: `${good}${'x'.repeat(9000)}` });
    expect((await lapsing.next('error')).code).toBe('bad_request');
    lapsing.send({ type: 'auth', token: tokenFor('hard-lapse', { aud: 'another-app' }) });
    expect((await lapsing.next('error')).code).toBe('unauthorized');
    const closed = await within(lapsing.closed, 5000, 'close at expiry');
    expect(closed.code).toBe(4401);
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 - 50);
    expect(Date.now()).toBeLessThan(exp * 1000 + 1500);
    await sleep(Math.max(0, exp * 1000 + 1000 - Date.now()));
    refreshed.send({ type: 'ping' });
    await refreshed.next('pong');
    expect(refreshed.ws.readyState).toBe(refreshed.ws.OPEN);
    refreshed.close();
  });

  it('[H-AUTH-18] an `auth` refresh while the database is away is answered `unavailable` (retry later), not `unauthorized`: the token is good', async () => {
    const client = await node.connect(sid, tokenFor('hard-db-away', { exp: nowS() + 600 }));
    const service = node.server.service;
    const resolveUser = service.resolveUser.bind(service);
    service.resolveUser = async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    };
    try {
      client.send({ type: 'auth', token: tokenFor('hard-db-away', { exp: nowS() + 900 }) });
      const err = await client.next('error');
      expect(err.code).toBe('unavailable');
      expect(err.retry_after_ms).toBeGreaterThan(0);
    } finally {
      service.resolveUser = resolveUser;
    }
    // Once the database answers, the same refresh is taken.
    client.send({ type: 'auth', token: tokenFor('hard-db-away', { exp: nowS() + 900 }) });
    client.send({ type: 'ping' });
    await client.next('pong');
    await sleep(300);
    expect(client.events.filter((e) => e.type === 'error')).toHaveLength(1);
    client.close();
  });

  it('[H-AUTH-13] JWKS unreachable: cached keys keep working (also past the cache age), new `kid`s fail closed with ≤ 1 attempt per cooldown, recovery when it returns', async () => {
    const outageJwks = new JwksServer();
    const k1 = rsaKey('outage-k1');
    const k2 = rsaKey('outage-k2');
    outageJwks.keys = [k1.publicJwk];
    await outageJwks.start();
    const cooldownMs = 500;
    const n = await startNode({
      env: { AUTH_JWKS_URL: outageJwks.url },
      server: { auth: { jwksCooldownMs: cooldownMs, jwksCacheMaxAgeMs: 300, fetchTimeoutMs: 1000 } },
    });
    const sign = (k: RsaKey, sub: string) =>
      signJws({ alg: 'RS256', kid: k.kid }, { sub, exp: nowS() + 600 }, { rsa: k.privateKey });
    try {
      const s = await n.sessionId(sign(k1, 'outage-a'));
      // Down: connections refused.
      await outageJwks.stop();
      await sleep(400); // past the key cache age: a refresh is due, and it fails
      const c = await n.connect(s, sign(k1, 'outage-b'));
      expect(c.init?.you.user_id).toBe('outage-b');
      c.close();
      expect(await refusal(n, s, sign(k2, 'outage-new-ws'))).toBe(4401);
      expect(await userRows(n, 'outage-new')).toBe(0);
      // Listening but resetting every connection: now each attempt is counted. 200 unknown-kid tokens over a
      // few cooldowns cost at most one attempt per cooldown.
      outageJwks.reset = true;
      await outageJwks.start();
      const counted = outageJwks.requests.length;
      const started = Date.now();
      for (let i = 0; i < 200; i++) {
        expect(
          (await n.request('GET', '/live-chat/status', { token: sign(k2, `outage-new-${i}`) })).status,
        ).toBe(401);
        if (i % 50 === 49) await sleep(cooldownMs);
        expect(
          (await n.request('GET', '/live-chat/status', { token: sign(k1, `outage-old-${i % 5}`) })).status,
        ).toBe(200);
      }
      const elapsed = Date.now() - started;
      const attempts = outageJwks.requests.length - counted;
      expect(attempts).toBeLessThanOrEqual(Math.ceil(elapsed / cooldownMs) + 1);
      // Back with both keys: after the cooldown the new kid is fetched and accepted.
      outageJwks.keys = [k1.publicJwk, k2.publicJwk];
      outageJwks.reset = false;
      const back = Date.now();
      await waitFor(
        async () =>
          (await n.request('GET', '/live-chat/status', { token: sign(k2, 'outage-recovered') })).status ===
          200,
        5000,
        'recovery of the new kid',
      );
      expect(Date.now() - back).toBeLessThan(cooldownMs + 1500);
      const ok = await n.connect(s, sign(k2, 'outage-after'));
      expect(ok.init?.you.user_id).toBe('outage-after');
      ok.close();
    } finally {
      await n.close();
      await outageJwks.stop();
    }
  });

  it('[H-AUTH-19] JWKS unreachable at a cold start (no keys fetched yet): a valid token gets 503 `unavailable` with Retry-After and close 1011, not 401/4401 (clients keep good tokens); it is accepted within seconds of the JWKS answering, not after the 30 s cooldown', async () => {
    const coldJwks = new JwksServer();
    const k = rsaKey('cold-k1');
    coldJwks.keys = [k.publicJwk];
    coldJwks.status = 500;
    await coldJwks.start();
    const n = await startNode({ env: { AUTH_JWKS_URL: coldJwks.url } });
    const token = signJws(
      { alg: 'RS256', kid: k.kid },
      { sub: 'cold-a', exp: nowS() + 600 },
      { rsa: k.privateKey },
    );
    try {
      const http = await n.request('GET', '/live-chat/status', { token });
      expect(http.status).toBe(503);
      expect(http.body.error.code).toBe('unavailable');
      expect(Number(http.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await refusal(n, 1, token)).toBe(1011);
      // A token that is bad whatever the keys say is still 401.
      expect((await n.request('GET', '/live-chat/status', { token: 'abc.def.ghi' })).status).toBe(401);
      expect(await userRows(n, 'cold-a')).toBe(0);
      coldJwks.status = 200;
      const back = Date.now();
      await waitFor(
        async () => (await n.request('GET', '/live-chat/status', { token })).status === 200,
        10_000,
        'the token accepted once the JWKS answers',
      );
      expect(Date.now() - back).toBeLessThan(5000);
      const s = await n.sessionId(token);
      const c = await n.connect(s, token);
      expect(c.init?.you.user_id).toBe('cold-a');
      c.close();
    } finally {
      await n.close();
      await coldJwks.stop();
    }
  });

  it('[H-AUTH-14] `session_id` of another (future), ended or non-existent session, or junk (`../x`, `1e3`, 10 KB) → 4409/4404/HTTP 414, never a 5xx', async () => {
    const store = node.server.store;
    const hour = 3_600_000;
    const future = await store.ensureSession({
      drawTime: Date.now() + 100 * hour,
      startsAt: Date.now() + 99 * hour,
      endsAt: Date.now() + 101 * hour,
    });
    const ended = await store.ensureSession({
      drawTime: Date.now() - 100 * hour,
      startsAt: Date.now() - 101 * hour,
      endsAt: Date.now() - 99 * hour,
    });
    expect(await refusal(node, future.id, good)).toBe(4409);
    expect(await refusal(node, ended.id, good)).toBe(4409);
    expect(await refusal(node, 999_999_999, good)).toBe(4404);
    for (const junk of [
      '0',
      '-1',
      '1e3',
      '01',
      '0x10',
      '1.0',
      '%2E%2E%2Fx',
      '..%2F..%2Fx',
      '%00',
      '9'.repeat(16),
      'NaN',
    ]) {
      const code = await refusal(node, junk, good);
      expect([4404, 'HTTP 404'], junk).toContain(code);
    }
    // Over the router's 300-character parameter limit: refused before any handler runs.
    const huge = await refusal(node, 'x'.repeat(10 * 1024), good);
    expect(huge).toBe('HTTP 414');
    // Nothing of the above hurt the server.
    const client = await node.connect(sid, good);
    expect(client.init?.session.id).toBe(sid);
    client.close();
  });

  it('[H-AUTH-15] Origin: foreign and look-alike origins (`.evil.com` suffix, wrong scheme or port, `null`, userinfo) close 1008 before any auth or database work; none, same-origin and the listed one are served', async () => {
    const lookAlikes = [
      'https://evil.example',
      'https://app.example.com.evil.com',
      'https://evil.com/https://app.example.com',
      'http://app.example.com',
      'https://app.example.com:8443',
      'https://app.example.com.',
      'https://APP.EXAMPLE.COM',
      'https://user@app.example.com',
      'null',
      'file://',
      '',
      'https://app.example.co',
      'https://xn--pp-5cd.example.com',
    ];
    const fetchesBefore = jwks.requests.length;
    for (const origin of lookAlikes) {
      // A token of a user never seen, signed by a key never seen: no user row and no key fetch may follow.
      const stranger = signJws(
        { alg: 'RS256', kid: `origin-${randomBytes(4).toString('hex')}` },
        claims('hard-origin'),
        {
          rsa: key.privateKey,
        },
      );
      const code = await refusal(node, sid, stranger, { origin });
      expect(code, `Origin ${JSON.stringify(origin)}`).toBe(origin === '' ? 4401 : 1008);
    }
    expect(jwks.requests.length).toBe(fetchesBefore);
    expect(await userRows(node, 'hard-origin')).toBe(0);
    const noOrigin = await node.connect(sid, good);
    const sameOrigin = await node.connect(sid, good, { origin: node.url });
    const listed = await node.connect(sid, good, { origin: ALLOWED_ORIGIN });
    for (const c of [noOrigin, sameOrigin, listed]) {
      expect(c.init?.type).toBe('init');
      c.close();
    }
  });

  it('[H-AUTH-16] the admin key: wrong, empty, case-changed or in the query → 401, and it never authorises a user action', async () => {
    const admin = secret('hardening-admin-key-0123456789');
    const n = await startNode({ env: { AUTH_JWKS_URL: jwks.url, LIVE_CHAT_ADMIN_API_KEY: admin } });
    try {
      for (const k of ['', 'x', admin.toUpperCase(), `${admin}x`, admin.slice(0, -1), `${admin},${admin}`]) {
        const r = await n.request('PUT', '/live-chat/users/someone', {
          headers: { 'x-admin-key': k },
          body: { username: 'pwned' },
        });
        expect(r.status, JSON.stringify(k)).toBe(401);
      }
      expect(
        (await n.request('PUT', `/live-chat/users/someone?x-admin-key=${admin}`, { body: { username: 'x' } }))
          .status,
      ).toBe(401);
      // The admin key is not a user: it cannot send messages.
      const sent = await n.request('POST', '/live-chat/messages', {
        headers: { 'x-admin-key': admin },
        body: { message: 'x' },
      });
      expect(sent.status).toBe(401);
      const ok = await n.request('PUT', '/live-chat/users/someone', {
        headers: { 'x-admin-key': admin },
        body: { username: 'Someone' },
      });
      expect(ok.status).toBe(200);
    } finally {
      await n.close();
    }
  });

  it('[H-AUTH-17] no token, signature or admin key appears in any log line this file produced (debug level)', async () => {
    // Paths where a token travels in a URL or a frame: a refused handshake, an unknown route, an `auth` frame.
    const leak = tokenFor('hard-log', { name: 'Log Leak' });
    expect(await refusal(node, 'nope', leak)).toBe(4404);
    await node.request('GET', `/live-chat/nope?token=${leak}&access_token=${leak}`);
    await node.request('GET', `/live-chat/nope/${leak}`);
    await node.request('GET', `/live-chat/status?admin_key=${leak}&jwt=${leak}`);
    await node.request('GET', '/live-chat/status', { headers: { authorization: `Bearer ${leak}x` } });
    const c = await node.connect(sid, leak);
    c.send({ type: 'auth', token: `${leak}x` });
    await c.next('error');
    c.send(`{"type":"auth","token":"${leak}"`);
    await c.next('error');
    c.close();
    await sleep(100);
    const lines = expectNoSecretsLogged();
    expect(lines).toBeGreaterThan(100);
  });
});

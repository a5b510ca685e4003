import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KyselyChatStore } from '../../src/store/kysely-store.js';
import { createFreshDatabase, type FreshDatabase, postgresAvailable } from '../support/postgres.js';
import type { TestClient } from '../support/ws-client.js';
import { expectNoSecretsLogged, type Node, secret, sleep, startNode } from './support.js';

// Issue 6, payloads: hostile JSON and hostile text against real servers on SQLite and on PostgreSQL side by
// side, so "refused the same way on both" is a comparison, not a hope.

const ADMIN = secret('payload-admin-key-0123456789abcdef');
const pgReady = await postgresAvailable();

interface Backend {
  name: 'sqlite' | 'postgres';
  node: Node;
  sid: number;
  token: string;
}

let db: FreshDatabase | undefined;
const backends: Backend[] = [];
const sqlite = () => backends[0]!;

async function start(name: Backend['name'], env: Record<string, string>): Promise<Backend> {
  const node = await startNode({
    env: {
      LIVE_CHAT_ADMIN_API_KEY: ADMIN,
      LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '100000',
      LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100000',
      ...env,
    },
  });
  const token = await node.token(`payload-${name}`);
  return { name, node, token, sid: await node.sessionId(token) };
}

function storeDb(n: Node) {
  return (n.server.store as KyselyChatStore).db;
}

async function storedTexts(b: Backend, userId: string): Promise<string[]> {
  const rows = await storeDb(b.node)
    .selectFrom('live_chat_messages')
    .select(['message'])
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute();
  return rows.map((r) => r.message);
}

/**
 * Sends over WS and waits for the answer: our own stored message, or the error naming our client_msg_id. Polls
 * the event log instead of `next()`, so no waiter outlives its call and takes a later answer.
 */
async function sendWs(c: TestClient, message: unknown, id: string): Promise<{ ok: boolean; value: any }> {
  c.send({ type: 'message', message, client_msg_id: id });
  // Only our own: other users' messages with the same client_msg_id reach this socket too (a broadcast).
  const me = c.init?.you.user_id;
  const deadline = Date.now() + 5000;
  for (;;) {
    const e = c.events.find(
      (e) =>
        (e.type === 'new_message' && e.message.client_msg_id === id && e.message.user_id === me) ||
        (e.type === 'error' && e.client_msg_id === id),
    );
    if (e) return e.type === 'new_message' ? { ok: true, value: e.message } : { ok: false, value: e };
    if (Date.now() > deadline) throw new Error(`no answer to ${id}`);
    await sleep(5);
  }
}

/** Open socket, `ping`, `pong`: the connection survived whatever came before. */
async function alive(c: TestClient): Promise<void> {
  c.send({ type: 'ping' });
  await c.next('pong');
}

beforeAll(async () => {
  backends.push(await start('sqlite', {}));
  if (pgReady) {
    db = await createFreshDatabase('drawchat_hard_payloads');
    backends.push(await start('postgres', { DATABASE_URL: db.url }));
  }
});

afterAll(async () => {
  await Promise.all(backends.map((b) => b.node.close()));
  await db?.drop();
  expectNoSecretsLogged();
});

describe('payloads (issue 6)', () => {
  it('[H-PAY-01] not JSON, arrays, scalars, unknown or non-string types, wrong field types and binary frames → one `bad_request` each; the socket stays open; nothing stored', async () => {
    const b = sqlite();
    const user = await b.node.token('pay-junk');
    const c = await b.node.connect(b.sid, user);
    const frames: unknown[] = [
      'not json',
      '{"type":"message","message":"unterminated',
      '[{"type":"ping"}]',
      '[]',
      '1',
      '"message"',
      'null',
      'true',
      '{}',
      '{"type":"MESSAGE","message":"x"}',
      '{"type":"message "}',
      '{"type":["message"],"message":"x"}',
      '{"type":null}',
      '{"type":{"toString":"message"}}',
      '{"type":"message","message":123}',
      '{"type":"message","message":null}',
      '{"type":"message","message":["x"]}',
      '{"type":"message","message":{"text":"x"}}',
      '{"type":"like_message","message_id":"1"}',
      '{"type":"like_message","message_id":1.5}',
      '{"type":"like_message","message_id":-1}',
      '{"type":"like_message","message_id":0}',
      '{"type":"like_message","message_id":1e308}',
      '{"type":"like_message","message_id":9007199254740993}',
      '{"type":"unlike_message"}',
      '{"type":"auth"}',
      '{"type":"auth","token":42}',
      '{"type":"auth","token":""}',
    ];
    for (const f of frames) c.send(f);
    c.ws.send(Buffer.from('{"type":"ping"}'), { binary: true });
    const errors = await c.collect('error', (l) => l.length >= frames.length + 1, 5000);
    expect(errors).toHaveLength(frames.length + 1);
    expect(new Set(errors.map((e) => e.code))).toEqual(new Set(['bad_request']));
    await alive(c);
    expect(await storedTexts(b, b.node.userId(user))).toEqual([]);
    c.close();
  });

  it('[H-PAY-02] extra fields are ignored (stored message has exactly the contract fields); identity, host and winner flags come from the token only', async () => {
    const b = sqlite();
    const mallory = await b.node.token('pay-mallory');
    const victim = b.node.userId(await b.node.token('pay-victim'));
    const c = await b.node.connect(b.sid, mallory);
    const spoof = {
      user_id: victim,
      username: 'Victim',
      profile_pic: 'https://evil.test/x.png',
      is_host: true,
      is_winner: true,
      id: 1,
      session_id: b.sid + 1,
      created_at: '2000-01-01T00:00:00Z',
      likes: 9999,
      liked_by_me: true,
      roles: ['host'],
      extra: { nested: [1, 2, 3] },
    };
    c.send({ type: 'message', message: 'spoofed fields', client_msg_id: 'spoof-x', ...spoof });
    const live = (await c.next('new_message', (e) => e.message.client_msg_id === 'spoof-x')).message;
    expect(Object.keys(live).sort()).toEqual(
      [
        'client_msg_id',
        'created_at',
        'id',
        'is_host',
        'is_winner',
        'likes',
        'message',
        'profile_pic',
        'session_id',
        'user_id',
        'username',
      ].sort(),
    );
    expect(live).toMatchObject({
      user_id: b.node.userId(mallory),
      username: 'pay-mallory',
      profile_pic: null,
      is_host: false,
      is_winner: false,
      likes: 0,
      session_id: b.sid,
    });
    expect(Math.abs(Date.parse(live.created_at) - Date.now())).toBeLessThan(10_000);
    const http = await b.node.request('POST', '/live-chat/messages', {
      token: mallory,
      body: { message: 'spoofed over http', ...spoof, session_id: undefined },
    });
    expect(http.status).toBe(201);
    expect(http.body.user_id).toBe(b.node.userId(mallory));
    expect(await storedTexts(b, victim)).toEqual([]);
    // `like_message` with someone else's user id likes as the token's user.
    c.send({ type: 'like_message', message_id: live.id, user_id: victim });
    await c.next('message_like_update', (e) => e.message_id === live.id);
    const likes = await storeDb(b.node).selectFrom('live_chat_likes').select(['user_id']).execute();
    expect(likes.map((l) => l.user_id)).toEqual([b.node.userId(mallory)]);
    c.close();
  });

  it('[H-PAY-03] `__proto__` and `constructor.prototype` in frames, bodies, query strings and params pollute nothing: Object.prototype unchanged, bodies 400, frames stored without them', async () => {
    const b = sqlite();
    const ownKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();
    const keysBefore = ownKeys();
    const user = await b.node.token('pay-proto');
    const c = await b.node.connect(b.sid, user);
    const frames = [
      '{"type":"message","message":"proto 1","client_msg_id":"p1","__proto__":{"polluted":"yes","isHost":true}}',
      '{"type":"message","message":"proto 2","client_msg_id":"p2","constructor":{"prototype":{"polluted":"yes"}}}',
      '{"__proto__":{"type":"message"},"message":"proto 3"}',
      '{"type":"like","__proto__":{"polluted":"yes"}}',
      '{"type":"auth","token":"x","__proto__":{"polluted":"yes"}}',
    ];
    for (const f of frames) c.send(f);
    const stored = await c.collect('new_message', (l) => l.length >= 2, 5000);
    expect(stored.map((e) => e.message.message).sort()).toEqual(['proto 1', 'proto 2']);
    for (const e of stored) {
      expect(e.message.is_host).toBe(false);
      expect(Object.hasOwn(e.message, '__proto__')).toBe(false);
    }
    // The third frame has no own `type`: an inherited one must not count.
    expect((await c.next('error')).code).toBe('bad_request');
    for (const body of [
      '{"message":"x","__proto__":{"polluted":"yes"}}',
      '{"message":"x","constructor":{"prototype":{"polluted":"yes"}}}',
      '{"message":{"__proto__":{"polluted":"yes"}}}',
    ]) {
      const r = await b.node.request('POST', '/live-chat/messages', {
        token: user,
        rawBody: body,
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status, body).toBe(400);
    }
    const admin = await b.node.request('PUT', '/live-chat/users/pay-proto-target', {
      headers: { 'x-admin-key': ADMIN, 'content-type': 'application/json' },
      rawBody: '{"username":"ok","__proto__":{"polluted":"yes"}}',
    });
    expect(admin.status).toBe(400);
    for (const q of [
      '__proto__[polluted]=yes',
      '__proto__.polluted=yes',
      'constructor[prototype][polluted]=yes',
      'session_id=1&__proto__=1',
    ]) {
      const r = await b.node.request('GET', `/live-chat/messages?${q}`, { token: user });
      expect([200, 400], q).toContain(r.status);
    }
    const viaParam = await b.node.request('PUT', '/live-chat/users/__proto__', {
      headers: { 'x-admin-key': ADMIN },
      body: { username: 'proto user' },
    });
    expect(viaParam.status).toBe(200);
    expect(viaParam.body.user_id).toBe('__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).isHost).toBeUndefined();
    expect(ownKeys()).toEqual(keysBefore);
    await alive(c);
    c.close();
  });

  it('[H-PAY-04] XSS payloads are stored and served verbatim as JSON (`application/json`, `nosniff`) on both stores, never as markup', async () => {
    const xss = [
      '<script>alert(1)</script>',
      '<img src=x onerror=alert(1)>',
      '<svg/onload=alert(1)>',
      '"><iframe srcdoc="<script>parent.alert(1)</script>">',
      '<a href="javascript:alert(1)">win a prize</a>',
      '</script><script>alert(document.cookie)</script>',
      "{{constructor.constructor('alert(1)')()}}",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a template-injection payload, on purpose
      '${alert(1)}',
      '<!--',
      '&lt;b&gt;entities stay entities&lt;/b&gt;',
      '\u003cscript\u003e',
    ];
    for (const b of backends) {
      const user = await b.node.token('pay-xss');
      const c = await b.node.connect(b.sid, user);
      for (const [i, text] of xss.entries()) {
        const r = await sendWs(c, text, `xss-${i}`);
        expect(r.ok, `${b.name}: ${text}`).toBe(true);
        expect(r.value.message).toBe(text);
      }
      expect(await storedTexts(b, b.node.userId(user))).toEqual(xss);
      const history = await b.node.request('GET', `/live-chat/messages?session_id=${b.sid}`, { token: user });
      expect(history.headers.get('content-type')).toMatch(/^application\/json/);
      expect(history.headers.get('x-content-type-options')).toBe('nosniff');
      expect(
        history.body.messages
          .filter((m: any) => m.user_id === b.node.userId(user))
          .map((m: any) => m.message),
      ).toEqual(xss);
      // Reflected in an error: still JSON, still nosniff.
      const reflected = await b.node.request('GET', '/<script>alert(1)</script>');
      expect(reflected.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reflected.headers.get('x-content-type-options')).toBe('nosniff');
      // A hostile display name is text too; a `javascript:` avatar is refused.
      const named = await b.node.request('PUT', '/live-chat/users/pay-xss-name', {
        headers: { 'x-admin-key': ADMIN },
        body: { username: '<img src=x onerror=alert(1)>' },
      });
      expect(named.body.username).toBe('<img src=x onerror=alert(1)>');
      // A name with nothing visible in it (zero-width and format characters only) is refused, as such a message is.
      for (const username of ['\u200b', '\u202e\u2060 ']) {
        const r = await b.node.request('PUT', '/live-chat/users/pay-xss-name', {
          headers: { 'x-admin-key': ADMIN },
          body: { username },
        });
        expect(r.status, JSON.stringify(username)).toBe(400);
        const dev = await b.node.request('POST', '/live-chat/dev/token', { body: { username } });
        expect(dev.status, JSON.stringify(username)).toBe(400);
      }
      for (const pic of [
        'javascript:alert(1)',
        'data:image/svg+xml,<svg onload=alert(1)>',
        'https://u:p@evil.test/a.png',
      ]) {
        const r = await b.node.request('PUT', '/live-chat/users/pay-xss-name', {
          headers: { 'x-admin-key': ADMIN },
          body: { profile_pic: pic },
        });
        expect(r.status, pic).toBe(400);
      }
      c.close();
    }
  });

  it('[H-PAY-05] SQL injection text is stored verbatim on both stores; SQL in ids and query parameters is refused (400); every table is intact', async () => {
    const sqlTexts = [
      "'; DROP TABLE live_chat_messages; --",
      "' OR '1'='1",
      '1; DELETE FROM users',
      "Robert'); DROP TABLE students;--",
      '\\x27 UNION SELECT * FROM users --',
      '$$; SELECT pg_sleep(10); $$',
      "' || (SELECT sqlite_version()) || '",
    ];
    for (const b of backends) {
      const user = await b.node.token('pay-sql');
      const c = await b.node.connect(b.sid, user);
      for (const [i, text] of sqlTexts.entries()) {
        const started = Date.now();
        const r = await sendWs(c, text, `sql'--${i}`);
        expect(r.ok, `${b.name}: ${text}`).toBe(true);
        expect(Date.now() - started).toBeLessThan(2000);
      }
      // A client_msg_id full of quotes is still an exact idempotency key.
      const again = await sendWs(c, 'ignored retry text', "sql'--0");
      expect(again.value.message).toBe(sqlTexts[0]);
      expect(await storedTexts(b, b.node.userId(user))).toEqual(sqlTexts);
      for (const q of [
        'session_id=1;DROP TABLE users',
        "session_id=1' OR '1'='1",
        'before_id=1 OR 1=1',
        'limit=1);--',
        'after_id=-1',
      ]) {
        const r = await b.node.request('GET', `/live-chat/messages?${q}`, { token: user });
        expect(r.status, `${b.name} ${q}`).toBe(400);
      }
      const r = await b.node.request('POST', "/live-chat/like-message/1'OR'1'='1", { token: user });
      expect(r.status).toBe(400);
      for (const table of [
        'users',
        'live_chat_sessions',
        'live_chat_messages',
        'live_chat_likes',
        'live_chat_viewers',
      ] as const) {
        await expect(storeDb(b.node).selectFrom(table).selectAll().limit(1).execute()).resolves.toBeDefined();
      }
      c.close();
    }
  });

  it('[H-PAY-06] Unicode: emoji, ZWJ families, flags, RTL overrides and zero-width characters inside text are stored verbatim and counted in code points, identically on both stores; invisible-only text is refused', async () => {
    const family = '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466}'; // 7 code points
    const accepted = [
      '\u{1F44D}'.repeat(500),
      `${family} family`,
      family.repeat(71), // 497 code points
      '\u{1F1FA}\u{1F1E6}\u{1F1EF}\u{1F1F5}',
      'abc\u202Eevil.exe\u202C',
      'zero\u200Bwidth\u200Cjoin\u200Dmark\u2060',
      'مرحبا بالعالم',
      'e\u0301\u0301 accents',
      '\uFEFFbom at start',
    ];
    const refused: Array<[string, string]> = [
      ['\u{1F44D}'.repeat(501), 'message_too_long'],
      [family.repeat(72), 'message_too_long'],
      ['\u202E', 'invalid_message'],
      ['\u200B\u200C\u200D\u2060\uFEFF', 'invalid_message'],
      ['\u0301\u0301', 'invalid_message'],
      ['\u2066\u2069', 'invalid_message'],
      ['\uD83D lone surrogate', 'invalid_message'],
    ];
    const outcomes: Record<string, string[]> = {};
    for (const b of backends) {
      const user = await b.node.token('pay-unicode');
      const c = await b.node.connect(b.sid, user);
      const seen: string[] = [];
      for (const [i, text] of accepted.entries()) {
        const r = await sendWs(c, text, `u-ok-${i}`);
        expect(r.ok, `${b.name}: ${JSON.stringify(text).slice(0, 40)}`).toBe(true);
        expect(r.value.message).toBe(text.trim());
        seen.push(`ok:${r.value.message}`);
      }
      for (const [i, [text, code]] of refused.entries()) {
        const r = await sendWs(c, text, `u-bad-${i}`);
        expect(r.ok).toBe(false);
        expect(r.value.code, `${b.name}: ${JSON.stringify(text).slice(0, 40)}`).toBe(code);
        seen.push(`${r.value.code}:${r.value.message}`);
      }
      expect(await storedTexts(b, b.node.userId(user))).toEqual(accepted.map((t) => t.trim()));
      outcomes[b.name] = seen;
      c.close();
    }
    if (outcomes.postgres) expect(outcomes.postgres).toEqual(outcomes.sqlite);
  });

  it('[H-PAY-07] NUL is refused the same way on SQLite and PostgreSQL: in messages, client_msg_id, display names, avatar URLs, user ids, winners and dev-token names — never a 500; so is a lone surrogate', async () => {
    const results: Record<string, Array<[string, number | string]>> = {};
    for (const b of backends) {
      const user = await b.node.token('pay-nul');
      const c = await b.node.connect(b.sid, user);
      const r: Array<[string, number | string]> = [];
      const ws = await sendWs(c, 'a\u0000b', 'nul-1');
      r.push(['ws message', ws.value.code]);
      c.send({ type: 'message', message: 'ok', client_msg_id: 'nul\u0000id' });
      r.push(['ws client_msg_id', (await c.next('error', (e) => e.client_msg_id === undefined)).code]);
      const http = await b.node.request('POST', '/live-chat/messages', {
        token: user,
        body: { message: '\u0000' },
      });
      r.push(['http message', http.status]);
      const name = await b.node.request('PUT', '/live-chat/users/pay-nul-target', {
        headers: { 'x-admin-key': ADMIN },
        body: { username: 'evil\u0000name' },
      });
      r.push(['display name', name.status]);
      // Avatar URLs: the URL parser drops control characters and spaces at the ends and tabs and line breaks
      // inside; the stored text is what was sent, so such a value is refused, not stored.
      for (const pic of [
        '\u0000https://example.com/',
        'https://exa\tmple.com/\nx.png',
        ' https://example.com/x.png ',
      ]) {
        const avatar = await b.node.request('PUT', '/live-chat/users/pay-nul-target', {
          headers: { 'x-admin-key': ADMIN },
          body: { profile_pic: pic },
        });
        r.push([`avatar ${JSON.stringify(pic)}`, avatar.status]);
      }
      const id = await b.node.request('PUT', '/live-chat/users/pay%00nul', {
        headers: { 'x-admin-key': ADMIN },
        body: { username: 'x' },
      });
      r.push(['user id', id.status]);
      const winners = await b.node.request('POST', `/live-chat/sessions/${b.sid}/winners`, {
        headers: { 'x-admin-key': ADMIN },
        body: { user_ids: ['a\u0000b'] },
      });
      r.push(['winners', winners.status]);
      // A lone surrogate is not text either: SQLite would store invalid UTF-8, PostgreSQL U+FFFD.
      const loneName = await b.node.request('PUT', '/live-chat/users/pay-nul-target', {
        headers: { 'x-admin-key': ADMIN },
        body: { username: 'ab\ud800cd' },
      });
      r.push(['lone surrogate name', loneName.status]);
      const loneWinner = await b.node.request('POST', `/live-chat/sessions/${b.sid}/winners`, {
        headers: { 'x-admin-key': ADMIN },
        body: { user_ids: ['a\udc00b'] },
      });
      r.push(['lone surrogate winner', loneWinner.status]);
      const loneUser = await b.node.request('PUT', `/live-chat/users/${encodeURIComponent('x')}%ED%A0%80`, {
        headers: { 'x-admin-key': ADMIN },
        body: { username: 'x' },
      });
      r.push(['lone surrogate user id', loneUser.status]);
      const loneDev = await b.node.request('POST', '/live-chat/dev/token', {
        body: { username: 'lone\ud800dev' },
      });
      r.push(['lone surrogate dev name', loneDev.status]);
      const dev = await b.node.request('POST', '/live-chat/dev/token', {
        body: { username: 'nul\u0000dev' },
      });
      r.push(['dev token name', dev.status]);
      results[b.name] = r;
      expect(
        r.every(([, v]) => v === 'invalid_message' || v === 'bad_request' || v === 400),
        `${b.name}: ${JSON.stringify(r)}`,
      ).toBe(true);
      await alive(c);
      c.close();
    }
    if (results.postgres) expect(results.postgres).toEqual(results.sqlite);
  });

  it('[H-PAY-08] zalgo: 8 combining marks on a character are accepted, 9 refused (invalid_message); a wall of zalgo stays within the code-point limit', async () => {
    const b = sqlite();
    const user = await b.node.token('pay-zalgo');
    const c = await b.node.connect(b.sid, user);
    const marks = (n: number) =>
      Array.from({ length: n }, (_, i) => String.fromCodePoint(0x300 + (i % 0x6f))).join('');
    expect((await sendWs(c, `Z${marks(8)}algo`, 'z8')).ok).toBe(true);
    const nine = await sendWs(c, `Z${marks(9)}algo`, 'z9');
    expect(nine.value.code).toBe('invalid_message');
    const wall = await sendWs(c, `${`a${marks(8)}`.repeat(56)}`, 'zwall'); // 504 code points
    expect(wall.value.code).toBe('message_too_long');
    const fits = await sendWs(c, `${`a${marks(8)}`.repeat(55)}`, 'zfit'); // 495 code points
    expect(fits.ok).toBe(true);
    // Marks spread across many characters, 8 each, are fine; 9 anywhere is not.
    const sneaky = await sendWs(c, `${`a${marks(8)}`.repeat(10)}b${marks(9)}`, 'zsneak');
    expect(sneaky.value.code).toBe('invalid_message');
    c.close();
  });

  it('[H-PAY-09] whitespace-only text (NBSP, ideographic space, line and paragraph separators) is refused; newline floods shrink to one blank line; tabs and other controls are refused', async () => {
    const b = sqlite();
    const user = await b.node.token('pay-space');
    const c = await b.node.connect(b.sid, user);
    for (const [i, ws] of [
      ' ',
      '\u00A0',
      '\u3000',
      '\u2028',
      '\u2029',
      '\u2003\u2009\u202F',
      '\n\r\n\r',
    ].entries()) {
      const r = await sendWs(c, ws.repeat(100), `ws-${i}`);
      expect(r.value.code, JSON.stringify(ws)).toBe('invalid_message');
    }
    const flood = await sendWs(c, `top${'\n'.repeat(5000)}bottom`, 'nl-flood');
    expect(flood.value.message).toBe('top\n\nbottom');
    const crlf = await sendWs(c, `a${'\r\n \r\n'.repeat(400)}b`, 'crlf-flood');
    expect(crlf.value.message).toBe('a\n\nb');
    const lines = await sendWs(c, 'x\n'.repeat(300), 'many-lines');
    expect(lines.value.code).toBe('message_too_long');
    const tab = await sendWs(c, 'a\tb', 'tab');
    expect(tab.value.code).toBe('invalid_message');
    await alive(c);
    c.close();
  });

  it('[H-PAY-10] `client_msg_id` is per user: another user reusing your id stores their own message and never receives yours', async () => {
    const b = sqlite();
    const alice = await b.node.token('pay-alice');
    const eve = await b.node.token('pay-eve');
    const a = await b.node.connect(b.sid, alice);
    const e = await b.node.connect(b.sid, eve);
    const original = await sendWs(a, 'alice private-ish text', 'shared-id-1');
    const eves = await sendWs(e, 'eve text', 'shared-id-1');
    expect(eves.value.id).not.toBe(original.value.id);
    expect(eves.value.message).toBe('eve text');
    expect(eves.value.user_id).toBe(b.node.userId(eve));
    // Over HTTP as well; the replay header only for a true retry of one's own.
    const http = await b.node.request('POST', '/live-chat/messages', {
      token: eve,
      body: { message: 'eve over http', client_msg_id: 'shared-id-1' },
    });
    expect(http.body.id).toBe(eves.value.id);
    expect(http.headers.get('idempotent-replayed')).toBe('true');
    expect(http.body.message).toBe('eve text');
    a.close();
    e.close();
  });

  it('[H-PAY-11] deep nesting (5,000 levels), 1,000 keys and huge numbers are answered `bad_request` within 100 ms each; the process is unharmed', async () => {
    const b = sqlite();
    const user = await b.node.token('pay-deep');
    const c = await b.node.connect(b.sid, user);
    const deepArray = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const deepObject = `${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}`;
    const wide = `{${Array.from({ length: 1000 }, (_, i) => `"k${i}":${i}`).join(',')},"type":"nope"}`;
    const nested = `{"type":"message","message":${deepArray}}`;
    const numbers = '{"type":"like_message","message_id":1e999999}';
    for (const f of [deepArray, deepObject, wide, nested, numbers]) {
      expect(f.length).toBeLessThanOrEqual(16384);
      const started = performance.now();
      c.send(f);
      const err = await c.next('error');
      expect(err.code).toBe('bad_request');
      expect(performance.now() - started).toBeLessThan(100);
    }
    await alive(c);
    c.close();
  });

  it('[H-PAY-13] ids past 2^53 − 1 (paths, query parameters, bodies, frames) are refused with 400 `bad_request` on both stores, never a 500', async () => {
    // zod's `int()` stops them at the schema: past it, PostgreSQL would refuse them as out of bigint range (a 500)
    // while SQLite bound them as floats and answered 404 or an empty page.
    const huge = ['10000000000000000000', '1e19', '1e21', String(Number.MAX_SAFE_INTEGER + 1)];
    for (const b of backends) {
      const user = await b.node.token('pay-huge-ids');
      const c = await b.node.connect(b.sid, user);
      for (const n of huge) {
        const answers = [
          await b.node.request('POST', `/live-chat/like-message/${n}`, { token: user }),
          await b.node.request('DELETE', `/live-chat/like-message/${n}`, { token: user }),
          await b.node.request('GET', `/live-chat/messages?before_id=${n}`, { token: user }),
          await b.node.request('GET', `/live-chat/messages?after_id=${n}`, { token: user }),
          await b.node.request('GET', `/live-chat/messages?session_id=${n}`, { token: user }),
          await b.node.request('POST', `/live-chat/sessions/${n}/winners`, {
            headers: { 'x-admin-key': ADMIN },
            body: { user_ids: ['someone'] },
          }),
          await b.node.request('POST', '/live-chat/messages', {
            token: user,
            body: { message: 'hi', session_id: Number(n) },
          }),
          await b.node.request('POST', '/live-chat/like', { token: user, body: { session_id: Number(n) } }),
        ];
        for (const [i, r] of answers.entries()) {
          expect(r.status, `${b.name} ${n} #${i}`).toBe(400);
          expect(r.body.error.code, `${b.name} ${n} #${i}`).toBe('bad_request');
        }
        c.send(`{"type":"like_message","message_id":${n}}`);
        expect((await c.next('error')).code, `${b.name} ${n} frame`).toBe('bad_request');
      }
      // The largest safe id is still an id: an unknown message, not a bad request.
      const edge = await b.node.request('POST', `/live-chat/like-message/${Number.MAX_SAFE_INTEGER}`, {
        token: user,
      });
      expect(edge.status, b.name).toBe(404);
      await alive(c);
      c.close();
    }
  });

  it('[H-PAY-12] HTTP bodies: BOM, duplicate keys, wrong or missing content types, a charset trick, bytes that are not UTF-8, and 16 KiB + 1 are answered with coded 4xx (never 5xx)', async () => {
    const b = sqlite();
    const user = await b.node.token('pay-http');
    const post = (rawBody: string, contentType?: string) =>
      b.node.request('POST', '/live-chat/messages', {
        token: user,
        rawBody,
        headers: contentType ? { 'content-type': contentType } : {},
      });
    const cases: Array<[string, string, string | undefined, number]> = [
      ['BOM (stripped)', '\uFEFF{"message":"bom"}', 'application/json', 201],
      ['duplicate keys: last wins', '{"message":"first","message":"second"}', 'application/json', 201],
      ['text/plain', '{"message":"x"}', 'text/plain', 415],
      ['form', 'message=x', 'application/x-www-form-urlencoded', 415],
      ['no content type', '{"message":"x"}', undefined, 415],
      ['utf-16 charset claim', '{"message":"charset"}', 'application/json; charset=utf-16', 201],
      ['array body', '[{"message":"x"}]', 'application/json', 400],
      ['null body', 'null', 'application/json', 400],
      ['16 KiB + 1', JSON.stringify({ message: 'x'.repeat(16384 - 13) }), 'application/json', 413],
    ];
    for (const [label, body, type, expected] of cases) {
      const r = await post(body, type);
      expect(r.status, label).toBe(expected);
      if (r.status >= 400) expect(typeof r.body.error.code, label).toBe('string');
    }
    // Bytes that are not UTF-8 (JSON is UTF-8, RFC 8259: a charset parameter does not change how it is read) are
    // refused, not stored with U+FFFD in their place.
    const bytes = (...parts: Array<string | number[]>) =>
      Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    for (const [label, body, type] of [
      ['invalid UTF-8', bytes('{"message":"', [0xff, 0xfe], ' hi"}'), 'application/json'],
      [
        'latin-1 bytes',
        bytes('{"message":"caf', [0xe9], ' latin1"}'),
        'application/json; charset=iso-8859-1',
      ],
      ['an encoded surrogate', bytes('{"message":"x', [0xed, 0xa0, 0x80], '"}'), 'application/json'],
    ] as const) {
      const res = await fetch(`${b.node.url}/live-chat/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${user}`, 'content-type': type },
        body,
      });
      expect(res.status, label).toBe(400);
      expect(((await res.json()) as any).error.code, label).toBe('bad_request');
    }
    // A content coding the server does not decode (RFC 9110: 415), even over a body that happens to be plain JSON.
    for (const coding of ['gzip', 'br', 'x-whatever']) {
      const res = await fetch(`${b.node.url}/live-chat/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${user}`,
          'content-type': 'application/json',
          'content-encoding': coding,
        },
        body: '{"message":"encoded?"}',
      });
      expect(res.status, coding).toBe(415);
      expect(((await res.json()) as any).error.code, coding).toBe('unsupported_media_type');
    }
    expect(await storedTexts(b, b.node.userId(user))).toEqual(['bom', 'second', 'charset']);
  });
});

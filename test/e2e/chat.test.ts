import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { HistoryResponse } from '../../src/protocol/http.js';
import { holdWrites } from '../support/hold.js';
import { createFreshDatabase, type FreshDatabase, postgresAvailable } from '../support/postgres.js';
import { startServer, type TestServer } from '../support/server.js';

const pg = await postgresAvailable();

type Store = TestServer['server']['store'];

/** Records how many profiles each `previewUsersFromClaims` call of this store asks for (the read still runs). */
function countProfileReads(store: Store): { asked: number[]; restore: () => void } {
  const read = store.previewUsersFromClaims;
  const asked: number[] = [];
  store.previewUsersFromClaims = function (this: Store, inputs) {
    asked.push(inputs.length);
    return read.call(this, inputs);
  };
  return {
    asked,
    restore: () => {
      store.previewUsersFromClaims = read;
    },
  };
}

// Real server on an ephemeral port, real `ws` clients; the whole suite on SQLite and on PostgreSQL.
describe.each([
  { dialect: 'sqlite', skip: false },
  { dialect: 'postgres', skip: !pg },
])('chat over WebSocket and HTTP on $dialect', ({ dialect, skip }) => {
  let t: TestServer;
  let db: FreshDatabase | undefined;
  let alice: string;
  let bob: string;
  let sessionId: number;

  beforeAll(async () => {
    if (skip) return;
    db = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    t = await startServer({
      env: { LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '1000', ...(db ? { DATABASE_URL: db.url } : {}) },
    });
    alice = await t.token('alice');
    bob = await t.token('bob', { picture: 'https://example.com/bob.png' });
    sessionId = await t.sessionId(alice);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(({ skip: skipTest }) => {
    if (skip) skipTest('PostgreSQL is not reachable (it is required under CI=true)');
  });

  it('[test servers] on the real clock, the chat window stays open for the next hour (the default hourly windows hand over at hh:30; a test running across that moment saw its session close)', async () => {
    const status = await t.request('GET', '/live-chat/status', { token: alice });
    const { starts_at, ends_at } = status.body.session as { starts_at: string; ends_at: string };
    expect(Date.parse(starts_at)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(ends_at) - Date.now()).toBeGreaterThan(60 * 60_000);
  });

  it('[issue 5] the profiles of a crowd arriving in one turn are read with one statement, each user getting their own', async () => {
    const store = t.server.store;
    const { asked, restore } = countProfileReads(store);
    try {
      await store.setUserProfile(
        'crowd-7',
        { username: 'Seventh (backend)', profilePic: 'https://b/7.png' },
        0,
      );
      const users = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          t.server.service.resolveUser({
            userId: `crowd-${i}`,
            claimName: i === 7 ? null : `Crowd ${i}`,
            claimPicture: null,
            fallbackName: `crowd-${i}`,
            isHost: i === 3,
          }),
        ),
      );
      expect(asked).toEqual([20]);
      expect(users.map((u) => u.userId)).toEqual(Array.from({ length: 20 }, (_, i) => `crowd-${i}`));
      expect(users[7]).toMatchObject({
        userId: 'crowd-7',
        username: 'Seventh (backend)',
        profilePic: 'https://b/7.png',
        isHost: false,
      });
      expect(users[3]).toMatchObject({ username: 'Crowd 3', isHost: true });
    } finally {
      restore();
    }
  });

  it('[SPEC §5] two clients see each other’s messages, in order, sender included, after commit', async () => {
    const a = await t.connect(sessionId, alice);
    const b = await t.connect(sessionId, bob);
    expect(a.init!.you).toMatchObject({
      username: 'alice',
      is_host: false,
      is_winner: false,
      profile_pic: null,
    });
    expect(b.init!.you).toMatchObject({ username: 'bob', profile_pic: 'https://example.com/bob.png' });
    for (let i = 0; i < 5; i++) {
      a.send({ type: 'message', message: `a${i}`, client_msg_id: `a-${i}` });
      b.send({ type: 'message', message: `b${i}` });
    }
    const seenByA = await a.collect('new_message', (l) => l.length >= 10);
    const seenByB = await b.collect('new_message', (l) => l.length >= 10);
    const ids = seenByA.map((e) => e.message.id);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(seenByB.map((e) => e.message.id)).toEqual(ids);
    expect(seenByA.filter((e) => e.message.username === 'alice').map((e) => e.message.message)).toEqual([
      'a0',
      'a1',
      'a2',
      'a3',
      'a4',
    ]);
    const first = seenByB.find((e) => e.message.message === 'a0')!.message;
    expect(first).toMatchObject({
      session_id: sessionId,
      user_id: t.userId(alice),
      username: 'alice',
      profile_pic: null,
      is_winner: false,
      is_host: false,
      likes: 0,
      client_msg_id: 'a-0',
    });
    expect(new Date(first.created_at).toISOString()).toBe(first.created_at);
    expect(seenByB.find((e) => e.message.message === 'b0')!.message).not.toHaveProperty('client_msg_id');

    // Everything acknowledged is in the history, in the same order.
    const history = await t.request('GET', `/live-chat/messages?session_id=${sessionId}`, { token: alice });
    expect(history.status).toBe(200);
    expect(history.body.messages.map((m: any) => m.id).slice(-10)).toEqual(ids);
    // The page is the schema's exactly (the route does not check it on the way out): nothing missing, nothing more.
    expect(HistoryResponse.parse(history.body)).toEqual(history.body);
    a.close();
    b.close();
  });

  it('[SPEC §4] POST /live-chat/messages answers 201 with the stored message; it reaches the room', async () => {
    const b = await t.connect(sessionId, bob);
    const res = await t.request('POST', '/live-chat/messages', {
      token: alice,
      body: { message: '  over http  ' },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ message: 'over http', username: 'alice', session_id: sessionId });
    const live = await b.next('new_message', (e) => e.message.id === res.body.id);
    expect(live.message.message).toBe('over http');
    b.close();
  });

  it('[SPEC §6] a retry with the same client_msg_id returns the original and stores nothing new', async () => {
    const body = { message: 'only once', client_msg_id: 'retry-1' };
    const first = await t.request('POST', '/live-chat/messages', { token: alice, body });
    const again = await t.request('POST', '/live-chat/messages', {
      token: alice,
      body: { ...body, message: 'changed' },
    });
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    // Over the WebSocket the retry is answered to the sender only.
    const a = await t.connect(sessionId, alice);
    const b = await t.connect(sessionId, bob);
    a.send({ type: 'message', message: 'only once', client_msg_id: 'retry-1' });
    const echoed = await a.next('new_message', (e) => e.message.client_msg_id === 'retry-1');
    expect(echoed.message.id).toBe(first.body.id);
    // Another user may use the same client_msg_id: it is per user.
    const bobs = await t.request('POST', '/live-chat/messages', { token: bob, body });
    expect(bobs.body.id).not.toBe(first.body.id);
    await b.next('new_message', (e) => e.message.id === bobs.body.id);
    expect(b.messages().filter((m) => m.id === first.body.id)).toHaveLength(0);
    const history = await t.request('GET', `/live-chat/messages?session_id=${sessionId}`, { token: alice });
    expect(history.body.messages.filter((m: any) => m.client_msg_id === 'retry-1')).toHaveLength(2);
    a.close();
    b.close();
  });

  it('[SPEC §5] since resumes without gaps or duplicates while others keep sending', async () => {
    const a = await t.connect(sessionId, alice);
    const b = await t.connect(sessionId, bob);
    b.send({ type: 'message', message: 'before drop' });
    const lastSeen = (await a.next('new_message', (e) => e.message.message === 'before drop')).message.id;
    a.terminate();
    const sentWhileAway: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await t.request('POST', '/live-chat/messages', {
        token: bob,
        body: { message: `away ${i}` },
      });
      sentWhileAway.push(r.body.id);
    }
    const resumed = await t.connect(sessionId, alice, { query: `since=${lastSeen}` });
    // Keep sending during and after the reconnect.
    const after = await t.request('POST', '/live-chat/messages', {
      token: bob,
      body: { message: 'after resume' },
    });
    await resumed.next('new_message', (e) => e.message.id === after.body.id);
    const got = [...resumed.init!.messages.map((m: any) => m.id), ...resumed.messages().map((m) => m.id)];
    expect(got).toEqual([...sentWhileAway, after.body.id]);
    expect(new Set(got).size).toBe(got.length);
    resumed.close();
    b.close();
  });

  it('[SPEC §4] history pages: newest page, before_id, after_id, limit clamped to the maximum', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await t.request('POST', '/live-chat/messages', {
        token: bob,
        body: { message: `page ${i}` },
      });
      ids.push(r.body.id);
    }
    const newest = await t.request('GET', `/live-chat/messages?session_id=${sessionId}&limit=3`, {
      token: alice,
    });
    expect(newest.body.messages.map((m: any) => m.id)).toEqual(ids.slice(-3));
    expect(newest.body.has_more).toBe(true);
    const older = await t.request('GET', `/live-chat/messages?limit=3&before_id=${ids[4]}`, { token: alice });
    expect(older.body.messages.map((m: any) => m.id)).toEqual(ids.slice(1, 4));
    expect(older.body.session_id).toBe(sessionId);
    const newer = await t.request('GET', `/live-chat/messages?limit=3&after_id=${ids[2]}`, { token: alice });
    expect(newer.body.messages.map((m: any) => m.id)).toEqual(ids.slice(3, 6));
    expect(newer.body.has_more).toBe(true);
    const tail = await t.request('GET', `/live-chat/messages?limit=3&after_id=${ids[4]}`, { token: alice });
    expect(tail.body.messages.map((m: any) => m.id)).toEqual(ids.slice(5));
    expect(tail.body.has_more).toBe(false);
    const clamped = await t.request('GET', '/live-chat/messages?limit=100000', { token: alice });
    expect(clamped.status).toBe(200);
    expect(clamped.body.messages.length).toBeLessThanOrEqual(100);
    // An empty value is refused like any other that is not a number (`after_id=` was read as 0: the oldest page).
    for (const bad of [
      'limit=0',
      'limit=-1',
      'limit=abc',
      'before_id=x',
      'session_id=0',
      'after_id=',
      'before_id=',
      'limit=',
      // JavaScript's number syntax is not an id (the WebSocket path refuses the same with 4404).
      'limit=0x10',
      'session_id=1e3',
      'before_id=%205',
      'after_id=5.0',
      'limit=%2B5',
      'session_id=9007199254740993',
    ]) {
      const r = await t.request('GET', `/live-chat/messages?${bad}`, { token: alice });
      expect(r.status, bad).toBe(400);
      expect(r.body.error.code, bad).toBe('bad_request');
    }
    const unknown = await t.request('GET', '/live-chat/messages?session_id=999999', { token: alice });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
  });

  it('[SPEC §4] session hearts are repeatable and counted exactly; everyone sees the total', async () => {
    const a = await t.connect(sessionId, alice);
    const start = a.init!.total_likes as number;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        t.request('POST', '/live-chat/like', { token: i % 2 ? alice : bob }),
      ),
    );
    expect(results.map((r) => [r.status, r.body.error?.message ?? ''])).toEqual(results.map(() => [200, '']));
    expect(Math.max(...results.map((r) => r.body.total_likes))).toBe(start + 10);
    a.send({ type: 'like' });
    a.send({ type: 'like' });
    expect(await a.count('session_like_update', 'total_likes', (n) => n === start + 12)).toBe(start + 12);
    const status = await t.request('GET', '/live-chat/status', { token: alice });
    expect(status.body.session.total_likes).toBe(start + 12);
    a.close();
  });

  it('[SPEC §4] a message is liked at most once per user, and the like can be taken back', async () => {
    const msg = (
      await t.request('POST', '/live-chat/messages', { token: alice, body: { message: 'like me' } })
    ).body;
    const a = await t.connect(sessionId, alice);
    const like = await t.request('POST', `/live-chat/like-message/${msg.id}`, { token: bob });
    expect(like.status).toBe(200);
    expect(like.body).toEqual({ message_id: msg.id, likes: 1, liked: true });
    const repeat = await t.request('POST', `/live-chat/like-message/${msg.id}`, { token: bob });
    expect(repeat.body).toEqual({ message_id: msg.id, likes: 1, liked: true });
    await a.next('message_like_update', (e) => e.message_id === msg.id && e.likes === 1);
    a.send({ type: 'like_message', message_id: msg.id });
    await a.next('message_like_update', (e) => e.message_id === msg.id && e.likes === 2);
    // liked_by_me follows the requesting user, in history and in init.
    const hist = await t.request('GET', `/live-chat/messages?after_id=${msg.id - 1}&limit=1`, { token: bob });
    expect(hist.body.messages[0]).toMatchObject({ id: msg.id, likes: 2, liked_by_me: true });
    const reopened = await t.connect(sessionId, bob);
    expect(reopened.init!.messages.find((m: any) => m.id === msg.id)).toMatchObject({
      likes: 2,
      liked_by_me: true,
    });
    const unlike = await t.request('DELETE', `/live-chat/like-message/${msg.id}`, { token: bob });
    expect(unlike.body).toEqual({ message_id: msg.id, likes: 1, liked: false });
    const unlikeAgain = await t.request('DELETE', `/live-chat/like-message/${msg.id}`, { token: bob });
    expect(unlikeAgain.body).toEqual({ message_id: msg.id, likes: 1, liked: false });
    await a.next('message_like_update', (e) => e.message_id === msg.id && e.likes === 1);
    const missing = await t.request('POST', '/live-chat/like-message/99999999', { token: bob });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('not_found');
    a.send({ type: 'like_message', message_id: 99999999 });
    expect((await a.next('error')).code).toBe('not_found');
    a.close();
    reopened.close();
  });

  it('[SPEC §5] a like or unlike that changes nothing (the same user in another tab did it first) is answered to its socket with the count, which the tab had guessed wrong', async () => {
    const msg = (
      await t.request('POST', '/live-chat/messages', { token: alice, body: { message: 'liked in two tabs' } })
    ).body;
    const tab1 = await t.connect(sessionId, bob);
    const tab2 = await t.connect(sessionId, bob);
    const count = (e: any) => e.message_id === msg.id;
    tab1.send({ type: 'like_message', message_id: msg.id });
    expect((await tab2.next('message_like_update', count)).likes).toBe(1);
    await tab1.next('message_like_update', count);
    // Tab 2 still shows the message as not liked by bob: its tap is a no-op on the server.
    tab2.send({ type: 'like_message', message_id: msg.id });
    expect((await tab2.next('message_like_update', count)).likes).toBe(1);
    tab1.send({ type: 'unlike_message', message_id: msg.id });
    expect((await tab2.next('message_like_update', count)).likes).toBe(0);
    tab2.send({ type: 'unlike_message', message_id: msg.id });
    expect((await tab2.next('message_like_update', count)).likes).toBe(0);
    // The no-ops went to the tab that sent them only.
    await new Promise((r) => setTimeout(r, 300));
    expect(tab1.events.filter((e: any) => e.type === 'message_like_update' && count(e))).toHaveLength(2);
    tab1.close();
    tab2.close();
  });

  it('[SPEC §5] likes of several users on one message committed together: the room and a later init get the final count', async () => {
    const msg = (
      await t.request('POST', '/live-chat/messages', { token: alice, body: { message: 'liked by a crowd' } })
    ).body;
    const a = await t.connect(sessionId, alice);
    const likers = await Promise.all([1, 2, 3, 4, 5].map((k) => t.token(`crowd-liker-${k}`)));
    // Hold one commit, so that the likes arriving meanwhile are committed together in the next one.
    let first = true;
    const likesPerBatch: number[] = [];
    const held = holdWrites(t.server.store, (batch) => {
      likesPerBatch.push(batch.messageLikes.length);
      const hold = first;
      first = false;
      return hold;
    });
    try {
      const heart = t.request('POST', '/live-chat/like', { token: alice, body: {} });
      await new Promise((r) => setTimeout(r, 50));
      const likes = likers.map((token) => t.request('POST', `/live-chat/like-message/${msg.id}`, { token }));
      await new Promise((r) => setTimeout(r, 300));
      held.release();
      await heart;
      const answers = await Promise.all(likes);
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      expect(Math.max(...likesPerBatch), 'the likes were committed together').toBeGreaterThan(1);
    } finally {
      held.restore();
    }
    await a.next('message_like_update', (e) => e.message_id === msg.id && e.likes === 5, 3000);
    const later = await t.connect(sessionId, bob);
    expect(later.init!.messages.find((m: any) => m.id === msg.id)).toMatchObject({ likes: 5 });
    a.close();
    later.close();
  });

  it('[SPEC §5] viewer count counts distinct users: two tabs of one user count once', async () => {
    const carol = await t.token('carol');
    const dave = await t.token('dave');
    const c1 = await t.connect(sessionId, carol);
    const base = c1.init!.viewer_count as number;
    const c2 = await t.connect(sessionId, carol);
    expect(c2.init!.viewer_count).toBe(base);
    const d = await t.connect(sessionId, dave);
    expect(d.init!.viewer_count).toBe(base + 1);
    await c1.count('viewer_count_update', 'viewer_count', (n) => n === base + 1);
    d.close();
    await c1.count('viewer_count_update', 'viewer_count', (n) => n === base);
    c2.close();
    // One tab of carol is still open: she still counts.
    await new Promise((r) => setTimeout(r, 400));
    const status = await t.request('GET', '/live-chat/status', { token: carol });
    expect(status.body.session.viewer_count).toBe(base);
    c1.close();
  });

  it('[SPEC §5] malformed frames get bad_request and the connection stays open', async () => {
    const a = await t.connect(sessionId, alice);
    for (const frame of [
      'not json',
      '[1,2]',
      '{"type":"nope"}',
      '{"type":"message"}',
      '{"type":"like_message","message_id":"x"}',
      'null',
      '{"__proto__":{"type":"ping"}}',
    ]) {
      a.send(frame);
      const err = await a.next('error');
      expect(err.code, frame).toBe('bad_request');
    }
    a.send({ type: 'ping' });
    expect((await a.next('pong')).server_time).toMatch(/Z$/);
    expect(({} as any).type).toBeUndefined();
    a.close();
  });
});

describe('profiles of new users', () => {
  it('[issue 5] handshakes arriving one per turn within the read window share a profile read; one after a quiet spell is read at once', async () => {
    // A window far longer than the default (a few ms) so that twenty turns of a loaded test machine fit in it.
    const t = await startServer({ server: { userReadWindowMs: 200 } });
    try {
      const { service, store } = t.server;
      const { asked } = countProfileReads(store);
      const identity = (i: number) => ({
        userId: `new-${i}`,
        claimName: `New ${i}`,
        claimPicture: null,
        fallbackName: `new-${i}`,
        isHost: false,
      });
      const turn = () => new Promise((r) => setImmediate(r));
      // The first read after a quiet spell goes at the end of its turn, as it always did.
      const users = [service.resolveUser(identity(0))];
      await turn();
      expect(asked).toEqual([1]);
      // The crowd behind it (one handshake per turn, as a loaded server reads them) waits for the window.
      for (let i = 1; i < 20; i++) {
        users.push(service.resolveUser(identity(i)));
        await turn();
      }
      const resolved = await Promise.all(users);
      expect(asked).toEqual([1, 19]);
      expect(resolved.map((u) => u.username)).toEqual(Array.from({ length: 20 }, (_, i) => `New ${i}`));
      // Quiet again: the next newcomer is not held back.
      await new Promise((r) => setTimeout(r, 250));
      const late = service.resolveUser(identity(20));
      await turn();
      expect(asked).toEqual([1, 19, 1]);
      expect((await late).username).toBe('New 20');
    } finally {
      await t.close();
    }
  });
});

describe('profiles of returning users', () => {
  it('[issue 5] a comeback after the profile cache expired is answered at once; the crowd is read again in one statement a second later, changes included', async () => {
    const clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
    const t = await startServer({ clock });
    try {
      const { service, store } = t.server;
      const { asked } = countProfileReads(store);
      const identity = (i: number) => ({
        userId: `back-${i}`,
        // A name in the token wins over the stored one: user 3 has none, so a rename shows.
        claimName: i === 3 ? null : `Back ${i}`,
        claimPicture: null,
        fallbackName: `back-${i}`,
        isHost: false,
      });
      const crowd = Array.from({ length: 30 }, (_, i) => i);
      await Promise.all(crowd.map((i) => service.resolveUser(identity(i))));
      expect(asked).toEqual([30]);
      // Written with the next group commit (or within a second): wait for the rows.
      await expect
        .poll(async () => (await store.getUser('back-29'))?.username, { timeout: 5000 })
        .toBe('Back 29');

      // Minutes later (past the minute a profile is trusted), the whole crowd comes back, one per turn.
      clock.advance(5 * 60_000);
      await store.setUserProfile('back-3', { username: 'Renamed elsewhere' }, clock.now());
      const again = [];
      for (const i of crowd) {
        again.push(await service.resolveUser(identity(i)));
        await new Promise((r) => setImmediate(r));
      }
      expect(asked).toEqual([30]);
      expect(again[3]).toMatchObject({ userId: 'back-3', username: 'back-3' });
      await expect.poll(() => asked, { timeout: 5000 }).toEqual([30, 30]);
      await expect
        .poll(async () => (await service.resolveUser(identity(3))).username, { timeout: 5000 })
        .toBe('Renamed elsewhere');
      expect(asked).toEqual([30, 30]);

      // Past the stale window an entry is not used any more: the comeback waits for its read.
      clock.advance(30 * 60_000);
      await service.resolveUser(identity(5));
      expect(asked).toEqual([30, 30, 1]);
    } finally {
      await t.close();
    }
  });
});

describe('deferred work in a long poll phase', () => {
  it('[issue 5] every handshake, frame, close and HTTP request pokes the loop guard, which runs the commits and ticks due meanwhile (a heart storm’s poll phase held them back for seconds; a mass disconnect is such a phase too)', async () => {
    const t = await startServer();
    try {
      const loop = t.server.service.loop;
      const poke = loop.poke.bind(loop);
      let pokes = 0;
      loop.poke = () => {
        pokes++;
        poke();
      };
      const token = await t.token('poked');
      const sid = await t.sessionId(token);
      const afterRequests = pokes;
      expect(afterRequests).toBeGreaterThanOrEqual(1);
      const client = await t.connect(sid, token);
      const afterHandshake = pokes;
      expect(afterHandshake).toBeGreaterThan(afterRequests);
      client.send({ type: 'ping' });
      await client.next('pong');
      expect(pokes).toBeGreaterThan(afterHandshake);
      // A heart from the socket is committed by the loop guard's heart timer, and everyone sees the count.
      client.send({ type: 'like' });
      const update = await client.next('session_like_update');
      expect(update.total_likes).toBe(1);
      const beforeClose = pokes;
      client.close();
      const hub = t.server.service.hub;
      const deadline = Date.now() + 5_000;
      while (hub.connectionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(hub.connectionCount).toBe(0);
      expect(pokes).toBeGreaterThan(beforeClose);
    } finally {
      await t.close();
    }
  });
});

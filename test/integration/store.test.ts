import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChatStore, type KyselyChatStore } from '../../src/store/kysely-store.js';
import type {
  ChatStore,
  NewMessage,
  SessionRecord,
  StoredMessage,
  WriteBatch,
} from '../../src/store/types.js';
import { createFreshDatabase, postgresAvailable } from '../support/postgres.js';

// Throws under CI=true when PostgreSQL is missing, so the PostgreSQL blocks never skip silently there.
const pgUp = await postgresAvailable();

const HOUR = 3_600_000;
const BASE = Date.parse('2030-01-01T00:00:00.000Z');

interface Target {
  url: string;
  cleanup(): Promise<void>;
}

async function openTarget(dialect: 'sqlite' | 'postgres'): Promise<Target> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'drawchat-store-'));
    return {
      url: `sqlite:${join(dir, 'chat.db')}`,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const fresh = await createFreshDatabase();
  return { url: fresh.url, cleanup: () => fresh.drop() };
}

function batch(part: Partial<WriteBatch>): WriteBatch {
  return { messages: [], hearts: [], messageLikes: [], viewers: [], users: [], ...part };
}

function msg(
  sessionId: number,
  userId: string,
  message: string,
  extra: Partial<NewMessage> = {},
): NewMessage {
  return {
    sessionId,
    userId,
    username: `name of ${userId}`,
    profilePic: null,
    isHost: false,
    message,
    clientMsgId: null,
    createdAt: BASE,
    ...extra,
  };
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe.skipIf(dialect === 'postgres' && !pgUp)(`ChatStore on ${dialect}`, () => {
    let target: Target;
    let store: ChatStore;
    let draws = 0;

    /** A new session of its own, so tests do not see each other's rows. */
    const newSession = (): Promise<SessionRecord> => {
      const drawTime = BASE + ++draws * 3 * HOUR;
      return store.ensureSession({ drawTime, startsAt: drawTime - HOUR, endsAt: drawTime + HOUR });
    };

    const send = async (sessionId: number, texts: string[], userId = 'u1'): Promise<StoredMessage[]> => {
      const result = await store.write(batch({ messages: texts.map((t) => msg(sessionId, userId, t)) }));
      return result.messages.map((r) => r.message);
    };

    const activeViewers = async (sessionId: number): Promise<string[]> => {
      const rows = await (store as KyselyChatStore).db
        .selectFrom('live_chat_viewers')
        .select(['user_id', 'is_active'])
        .where('session_id', '=', sessionId)
        .orderBy('user_id')
        .execute();
      return rows.filter((r) => r.is_active === true || r.is_active === 1).map((r) => r.user_id);
    };

    beforeAll(async () => {
      target = await openTarget(dialect);
      store = createChatStore(target.url);
      await store.migrate();
    });

    afterAll(async () => {
      await store?.close();
      await target?.cleanup();
    });

    it('speaks its dialect and answers ping', async () => {
      expect(store.dialect).toBe(dialect);
      await store.ping();
    });

    it('keeps one epoch per database, and lastMessageId counts deleted messages too', async () => {
      const epoch = await store.epoch();
      expect(epoch).toMatch(/^[0-9a-f-]{36}$/);
      await store.migrate();
      expect(await store.epoch()).toBe(epoch);
      const s = await newSession();
      expect(await store.lastMessageId(s.id)).toBe(0);
      const [, second] = await send(s.id, ['one', 'two']);
      await store.deleteMessage(second!.id, BASE);
      expect(await store.lastMessageId(s.id)).toBe(second!.id);
      const other = await openTarget(dialect);
      const fresh = createChatStore(other.url);
      try {
        await fresh.migrate();
        expect(await fresh.epoch()).not.toBe(epoch);
      } finally {
        await fresh.close();
        await other.cleanup();
      }
    });

    it('migrating again is a no-op that keeps the data', async () => {
      await store.upsertUserFromClaims({
        id: 'keep',
        claimName: 'Keep',
        claimPicture: null,
        fallbackName: 'k',
        at: BASE,
      });
      await store.migrate();
      const other = createChatStore(target.url);
      try {
        await other.migrate();
        expect(await other.getUser('keep')).toEqual({ id: 'keep', username: 'Keep', profilePic: null });
      } finally {
        await other.close();
      }
    });

    describe('users', () => {
      it('resolves the name: token name, else backend profile, else fallback', async () => {
        const base = { id: 'alice', claimPicture: null, fallbackName: 'alice.mail', at: BASE };
        expect((await store.upsertUserFromClaims({ ...base, claimName: null })).username).toBe('alice.mail');
        expect(
          (await store.setUserProfile('alice', { username: 'Alice (backend)' }, BASE + 1)).username,
        ).toBe('Alice (backend)');
        expect((await store.upsertUserFromClaims({ ...base, claimName: 'Alice Token' })).username).toBe(
          'Alice Token',
        );
        // The token no longer carries a name: the backend profile shows again.
        expect((await store.upsertUserFromClaims({ ...base, claimName: null })).username).toBe(
          'Alice (backend)',
        );
        expect(await store.getUser('alice')).toEqual({
          id: 'alice',
          username: 'Alice (backend)',
          profilePic: null,
        });
      });

      it('resolves the picture: token picture, else backend picture, else null', async () => {
        const base = { id: 'bob', claimName: 'Bob', fallbackName: 'bob', at: BASE };
        expect((await store.upsertUserFromClaims({ ...base, claimPicture: null })).profilePic).toBeNull();
        expect(
          (await store.setUserProfile('bob', { profilePic: 'https://b/pic.png' }, BASE)).profilePic,
        ).toBe('https://b/pic.png');
        expect(
          (await store.upsertUserFromClaims({ ...base, claimPicture: 'https://t/pic.png' })).profilePic,
        ).toBe('https://t/pic.png');
        expect((await store.upsertUserFromClaims({ ...base, claimPicture: null })).profilePic).toBe(
          'https://b/pic.png',
        );
      });

      it('setUserProfile keeps fields left undefined, null clears the picture, and works before first contact', async () => {
        const first = await store.setUserProfile(
          'carol',
          { username: 'Carol', profilePic: 'https://c/1.png' },
          BASE,
        );
        expect(first).toEqual({ id: 'carol', username: 'Carol', profilePic: 'https://c/1.png' });
        expect(await store.setUserProfile('carol', { profilePic: 'https://c/2.png' }, BASE)).toEqual({
          id: 'carol',
          username: 'Carol',
          profilePic: 'https://c/2.png',
        });
        expect(await store.setUserProfile('carol', { username: 'Caroline' }, BASE)).toEqual({
          id: 'carol',
          username: 'Caroline',
          profilePic: 'https://c/2.png',
        });
        expect(await store.setUserProfile('carol', { profilePic: null }, BASE)).toEqual({
          id: 'carol',
          username: 'Caroline',
          profilePic: null,
        });
        // First contact afterwards with a nameless token keeps the backend name.
        const seen = await store.upsertUserFromClaims({
          id: 'carol',
          claimName: null,
          claimPicture: null,
          fallbackName: 'carol.mail',
          at: BASE,
        });
        expect(seen.username).toBe('Caroline');
        expect(await store.setUserProfile('dave', {}, BASE)).toEqual({
          id: 'dave',
          username: 'dave',
          profilePic: null,
        });
        expect(await store.getUser('nobody')).toBeUndefined();
      });

      it('previewUsersFromClaims reads without writing and says when the claims still have to be written; a batch writes them', async () => {
        const erin = { id: 'erin', claimName: 'Erin', claimPicture: null, fallbackName: 'erin', at: BASE };
        // Never seen: the user as the upsert would leave it, nothing stored yet.
        expect(await store.previewUsersFromClaims([erin])).toEqual([
          {
            user: { id: 'erin', username: 'Erin', profilePic: null },
            write: true,
          },
        ]);
        expect(await store.getUser('erin')).toBeUndefined();
        // The same id twice in one batch (two nodes' worth of claims): the last one wins, no conflict error.
        await store.write(
          batch({
            users: [
              { ...erin, claimName: 'Old Erin' },
              { ...erin, claimPicture: 'https://e/1.png' },
            ],
          }),
        );
        expect(await store.getUser('erin')).toEqual({
          id: 'erin',
          username: 'Erin',
          profilePic: 'https://e/1.png',
        });
        // Unchanged claims: nothing to write. Changed ones: the preview shows them, the row is untouched.
        const same = { ...erin, claimPicture: 'https://e/1.png', at: BASE + 5 };
        expect((await store.previewUsersFromClaims([same]))[0]!.write).toBe(false);
        await store.setUserProfile(
          'erin',
          { username: 'Erin (backend)', profilePic: 'https://b/e.png' },
          BASE,
        );
        const nameless = { ...same, claimName: null, claimPicture: null };
        expect(await store.previewUsersFromClaims([nameless])).toEqual([
          {
            user: { id: 'erin', username: 'Erin (backend)', profilePic: 'https://b/e.png' },
            write: true,
          },
        ]);
        expect((await store.getUser('erin'))!.username).toBe('Erin');
        // Written in a batch, the claims keep the backend profile, as upsertUserFromClaims does.
        await store.write(batch({ users: [nameless] }));
        expect(await store.getUser('erin')).toEqual({
          id: 'erin',
          username: 'Erin (backend)',
          profilePic: 'https://b/e.png',
        });
        expect((await store.previewUsersFromClaims([nameless]))[0]!.write).toBe(false);
      });

      it('previewUsersFromClaims answers many users at once, in the order asked, repeats included', async () => {
        const claims = (id: string, name: string | null) => ({
          id,
          claimName: name,
          claimPicture: null,
          fallbackName: id,
          at: BASE,
        });
        // 700 users, every third already stored: more than one statement's worth, and list lengths that are no
        // power of two.
        const all = Array.from({ length: 700 }, (_, i) => claims(`many-${i}`, `Many ${i}`));
        await store.write(batch({ users: all.filter((_, i) => i % 3 === 0) }));
        await store.setUserProfile('many-1', { username: 'Backend One' }, BASE);
        for (const asked of [all, all.slice(0, 3), [all[4]!, all[3]!, all[4]!]]) {
          const previews = await store.previewUsersFromClaims(asked);
          expect(previews.map((p) => p.user.id)).toEqual(asked.map((u) => u.id));
          for (const [i, p] of previews.entries()) {
            const n = Number(asked[i]!.id.slice('many-'.length));
            expect(p.write, asked[i]!.id).toBe(n % 3 !== 0);
            expect(p.user.username).toBe(`Many ${n}`);
          }
        }
        // The backend's name shows where the claims carry none (its row has those claims already: no write).
        const [nameless] = await store.previewUsersFromClaims([claims('many-1', null)]);
        expect(nameless).toEqual({
          user: { id: 'many-1', username: 'Backend One', profilePic: null },
          write: false,
        });
        expect(await store.previewUsersFromClaims([])).toEqual([]);
      });
    });

    describe('sessions', () => {
      it('ensureSession is idempotent, updates the window, and never touches is_active or likes', async () => {
        const drawTime = BASE + 1000 * HOUR;
        const a = await store.ensureSession({ drawTime, startsAt: drawTime - HOUR, endsAt: drawTime + HOUR });
        expect(a).toEqual({
          id: a.id,
          drawTime,
          startsAt: drawTime - HOUR,
          endsAt: drawTime + HOUR,
          isActive: false,
          totalLikes: 0,
        });
        expect(Number.isInteger(a.id) && a.id > 0).toBe(true);
        expect(
          await store.ensureSession({ drawTime, startsAt: drawTime - HOUR, endsAt: drawTime + HOUR }),
        ).toEqual(a);

        await store.setActiveSession(a.id);
        await store.write(batch({ hearts: [{ sessionId: a.id, count: 4 }] }));
        const moved = await store.ensureSession({
          drawTime,
          startsAt: drawTime - 2 * HOUR,
          endsAt: drawTime + 30_000,
        });
        expect(moved).toEqual({
          ...a,
          startsAt: drawTime - 2 * HOUR,
          endsAt: drawTime + 30_000,
          isActive: true,
          totalLikes: 4,
        });
        expect(await store.getSession(a.id)).toEqual(moved);
        expect(await store.getSession(987_654_321)).toBeUndefined();
        await store.setActiveSession(null);
      });

      it('setActiveSession marks exactly one session active, or none', async () => {
        const a = await newSession();
        const b = await newSession();
        await store.setActiveSession(a.id);
        expect((await store.getSession(a.id))?.isActive).toBe(true);
        expect((await store.getSession(b.id))?.isActive).toBe(false);
        await store.setActiveSession(b.id);
        expect((await store.getSession(a.id))?.isActive).toBe(false);
        expect((await store.getSession(b.id))?.isActive).toBe(true);
        await store.setActiveSession(b.id);
        expect((await store.getSession(b.id))?.isActive).toBe(true);
        await store.setActiveSession(null);
        expect((await store.getSession(a.id))?.isActive).toBe(false);
        expect((await store.getSession(b.id))?.isActive).toBe(false);
      });

      it('latestSessionStartedBy picks the latest draw whose window has started', async () => {
        // Far later than every other test's sessions.
        const d1 = Date.parse('2200-01-01T10:00:00.000Z');
        const d2 = Date.parse('2200-01-01T12:00:00.000Z');
        const s1 = await store.ensureSession({ drawTime: d1, startsAt: d1 - HOUR, endsAt: d1 + HOUR });
        const s2 = await store.ensureSession({ drawTime: d2, startsAt: d2 - HOUR, endsAt: d2 + HOUR });
        expect((await store.latestSessionStartedBy(d1 - HOUR))?.id).toBe(s1.id);
        expect((await store.latestSessionStartedBy(d2 - HOUR - 1))?.id).toBe(s1.id);
        expect((await store.latestSessionStartedBy(d2 - HOUR))?.id).toBe(s2.id);
        expect((await store.latestSessionStartedBy(d2 + 100 * HOUR))?.id).toBe(s2.id);
        expect((await store.latestSessionStartedBy(d1 - HOUR - 1))?.id).not.toBe(s1.id);
        expect(await store.latestSessionStartedBy(0)).toBeUndefined();
      });
    });

    describe('write()', () => {
      it('returns nothing for an empty batch', async () => {
        expect(await store.write(batch({}))).toEqual({
          messages: [],
          hearts: [],
          messageLikes: [],
          versions: [],
        });
      });

      it('stores messages with increasing ids in batch order and round-trips every field', async () => {
        const s = await newSession();
        const createdAt = Date.parse('2030-05-06T07:08:09.123Z');
        const result = await store.write(
          batch({
            messages: [
              msg(s.id, 'u1', 'first', {
                createdAt,
                profilePic: 'https://p/1.png',
                isHost: true,
                clientMsgId: 'c-1',
              }),
              msg(s.id, 'u2', 'second', { createdAt: createdAt + 1 }),
              msg(s.id, 'u1', 'third', { createdAt: createdAt + 2 }),
            ],
          }),
        );
        expect(result.messages.map((r) => r.duplicate)).toEqual([false, false, false]);
        const [a, b, c] = result.messages.map((r) => r.message);
        expect(a).toEqual({
          id: a!.id,
          sessionId: s.id,
          userId: 'u1',
          username: 'name of u1',
          profilePic: 'https://p/1.png',
          isHost: true,
          message: 'first',
          createdAt,
          createdAtText: new Date(createdAt).toISOString(),
          likes: 0,
          clientMsgId: 'c-1',
        });
        expect(b).toMatchObject({ message: 'second', isHost: false, profilePic: null, clientMsgId: null });
        expect(a!.id).toBeLessThan(b!.id);
        expect(b!.id).toBeLessThan(c!.id);
        const [more] = await send(s.id, ['fourth']);
        expect(more!.id).toBeGreaterThan(c!.id);
        expect(await store.getMessage(a!.id)).toEqual(a);
        expect((await store.messagesAfter(s.id, 0, 100)).map((m) => m.message)).toEqual([
          'first',
          'second',
          'third',
          'fourth',
        ]);
      });

      it('chains each new message to its predecessor in the session (prevId) and versions every batch', async () => {
        const s = await newSession();
        const other = await newSession();
        const first = await store.write(
          batch({
            messages: [
              msg(s.id, 'u1', 'a'),
              msg(other.id, 'u1', 'x'),
              msg(s.id, 'u2', 'b', { clientMsgId: 'k' }),
            ],
          }),
        );
        const [a, x, b] = first.messages;
        expect(a!.prevId).toBe(0);
        expect(x!.prevId).toBe(0);
        expect(b!.prevId).toBe(a!.message.id);
        const v1 = first.versions.find((v) => v.sessionId === s.id)!.version;
        const second = await store.write(
          batch({
            messages: [msg(s.id, 'u2', 'b again', { clientMsgId: 'k' }), msg(s.id, 'u1', 'c')],
            hearts: [{ sessionId: s.id, count: 1 }],
          }),
        );
        expect(second.messages[0]).toMatchObject({ duplicate: true, prevId: 0 });
        expect(second.messages[1]!.prevId).toBe(b!.message.id);
        expect(second.versions).toEqual([{ sessionId: s.id, version: v1 + 1 }]);
        const hearts = await store.write(batch({ hearts: [{ sessionId: s.id, count: 2 }] }));
        expect(hearts.versions).toEqual([{ sessionId: s.id, version: v1 + 2 }]);
      });

      it('stores times with millisecond precision', async () => {
        const s = await newSession();
        const [m] = (
          await store.write(batch({ messages: [msg(s.id, 'u1', 'frac', { createdAt: BASE + 1.7 })] }))
        ).messages;
        expect(m!.message.createdAt).toBe(BASE + 1);
        expect((await store.getMessage(m!.message.id))?.createdAt).toBe(BASE + 1);
      });

      it('client_msg_id makes a retry return the original, within a batch and across batches, per user', async () => {
        const s = await newSession();
        const first = await store.write(
          batch({
            messages: [
              msg(s.id, 'u1', 'hello', { clientMsgId: 'same' }),
              msg(s.id, 'u1', 'hello again?', { clientMsgId: 'same' }),
              msg(s.id, 'u2', 'hi', { clientMsgId: 'same' }),
              msg(s.id, 'u1', 'no id'),
              msg(s.id, 'u1', 'no id'),
            ],
          }),
        );
        const [orig, repeat, other, n1, n2] = first.messages;
        expect([orig, repeat, other, n1, n2].map((r) => r!.duplicate)).toEqual([
          false,
          true,
          false,
          false,
          false,
        ]);
        expect(repeat!.message).toEqual(orig!.message);
        expect(other!.message.id).not.toBe(orig!.message.id);
        expect(n1!.message.id).not.toBe(n2!.message.id);

        const retry = await store.write(
          batch({
            messages: [
              msg(s.id, 'u1', 'hello (retried)', { clientMsgId: 'same' }),
              msg(s.id, 'u2', 'hi', { clientMsgId: 'same' }),
              msg(s.id, 'u3', 'new user', { clientMsgId: 'same' }),
            ],
          }),
        );
        expect(retry.messages.map((r) => r.duplicate)).toEqual([true, true, false]);
        expect(retry.messages[0]!.message).toEqual(orig!.message);
        expect(retry.messages[1]!.message).toEqual(other!.message);
        // The same client_msg_id in another session is another message.
        const s2 = await newSession();
        const elsewhere = await store.write(
          batch({ messages: [msg(s2.id, 'u1', 'hello', { clientMsgId: 'same' })] }),
        );
        expect(elsewhere.messages[0]!.duplicate).toBe(false);

        const stored = await store.messagesAfter(s.id, 0, 100);
        expect(stored.map((m) => `${m.userId}:${m.message}`)).toEqual([
          'u1:hello',
          'u2:hi',
          'u1:no id',
          'u1:no id',
          'u3:new user',
        ]);

        // messageByClientId finds the same original (per session and user), deleted or not, as write() does.
        expect(await store.messageByClientId(s.id, 'u1', 'same')).toEqual(orig!.message);
        expect(await store.messageByClientId(s.id, 'u2', 'same')).toEqual(other!.message);
        expect((await store.messageByClientId(s2.id, 'u1', 'same'))?.id).toBe(
          elsewhere.messages[0]!.message.id,
        );
        expect(await store.messageByClientId(s.id, 'u9', 'same')).toBeUndefined();
        expect(await store.messageByClientId(s.id, 'u1', 'other')).toBeUndefined();
        expect(orig!.message.deleted).toBeUndefined();
        await store.deleteMessage(orig!.message.id, Date.now());
        // Found deleted or not, and saying so, so that a retry of a deleted message is refused.
        expect(await store.messageByClientId(s.id, 'u1', 'same')).toMatchObject({
          id: orig!.message.id,
          deleted: true,
        });
        const afterDeletion = await store.write(
          batch({ messages: [msg(s.id, 'u1', 'hello (retried)', { clientMsgId: 'same' })] }),
        );
        expect(afterDeletion.messages[0]).toMatchObject({
          duplicate: true,
          message: { id: orig!.message.id, deleted: true },
        });
      });

      it('sums hearts per session exactly', async () => {
        const s1 = await newSession();
        const s2 = await newSession();
        const r1 = await store.write(
          batch({
            hearts: [
              { sessionId: s2.id, count: 1 },
              { sessionId: s1.id, count: 3 },
              { sessionId: s2.id, count: 2 },
              { sessionId: s1.id, count: 1 },
            ],
          }),
        );
        expect(r1.hearts).toEqual([
          { sessionId: s2.id, totalLikes: 3 },
          { sessionId: s1.id, totalLikes: 4 },
        ]);
        await Promise.all(
          Array.from({ length: 20 }, () => store.write(batch({ hearts: [{ sessionId: s1.id, count: 5 }] }))),
        );
        expect((await store.getSession(s1.id))?.totalLikes).toBe(104);
        expect((await store.getSession(s2.id))?.totalLikes).toBe(3);
      });

      it('likes a message once per user, unlikes, and answers null for unknown or deleted messages', async () => {
        const s = await newSession();
        const [m1, m2, gone] = await send(s.id, ['one', 'two', 'gone']);
        await store.deleteMessage(gone!.id, BASE);
        const like = (messageId: number, userId: string, liked = true) => ({
          messageId,
          userId,
          liked,
          at: BASE,
        });

        const r = await store.write(
          batch({
            messageLikes: [
              like(m1!.id, 'a'),
              like(m1!.id, 'a'),
              like(m1!.id, 'b'),
              like(m2!.id, 'a'),
              like(m2!.id, 'a', false),
              like(m2!.id, 'a', false),
              like(987_654_321, 'a'),
              like(gone!.id, 'a'),
            ],
          }),
        );
        expect(r.messageLikes).toEqual([
          { messageId: m1!.id, sessionId: s.id, likes: 1, changed: true },
          { messageId: m1!.id, sessionId: s.id, likes: 1, changed: false },
          { messageId: m1!.id, sessionId: s.id, likes: 2, changed: true },
          { messageId: m2!.id, sessionId: s.id, likes: 1, changed: true },
          { messageId: m2!.id, sessionId: s.id, likes: 0, changed: true },
          { messageId: m2!.id, sessionId: s.id, likes: 0, changed: false },
          null,
          null,
        ]);
        expect((await store.getMessage(m1!.id))?.likes).toBe(2);
        expect((await store.getMessage(m2!.id))?.likes).toBe(0);

        const again = await store.write(
          batch({ messageLikes: [like(m1!.id, 'a'), like(m1!.id, 'b', false)] }),
        );
        expect(again.messageLikes).toEqual([
          { messageId: m1!.id, sessionId: s.id, likes: 2, changed: false },
          { messageId: m1!.id, sessionId: s.id, likes: 1, changed: true },
        ]);
        expect((await store.getMessage(m1!.id))?.likes).toBe(1);
        expect(await store.likedMessageIds('a', [m1!.id, m2!.id, gone!.id])).toEqual(new Set([m1!.id]));
      });

      it('records viewers in order', async () => {
        const s = await newSession();
        await store.write(
          batch({
            viewers: [
              { sessionId: s.id, userId: 'v1', active: true, at: BASE },
              { sessionId: s.id, userId: 'v2', active: true, at: BASE },
              { sessionId: s.id, userId: 'v3', active: true, at: BASE },
              { sessionId: s.id, userId: 'v3', active: false, at: BASE + 1 },
            ],
          }),
        );
        expect(await activeViewers(s.id)).toEqual(['v1', 'v2']);
        await store.write(
          batch({
            viewers: [
              { sessionId: s.id, userId: 'v1', active: false, at: BASE + 2 },
              { sessionId: s.id, userId: 'v3', active: true, at: BASE + 3 },
            ],
          }),
        );
        expect(await activeViewers(s.id)).toEqual(['v2', 'v3']);
      });

      it('commits all or nothing: a batch naming an unknown session stores none of it', async () => {
        const s = await newSession();
        await expect(
          store.write(
            batch({
              messages: [msg(s.id, 'u1', 'lost'), msg(987_654_321, 'u1', 'nowhere')],
              hearts: [{ sessionId: s.id, count: 1 }],
            }),
          ),
        ).rejects.toThrow();
        expect(await store.messagesAfter(s.id, 0, 10)).toEqual([]);
        expect((await store.getSession(s.id))?.totalLikes).toBe(0);
        // The store is still usable afterwards.
        expect(await send(s.id, ['after'])).toHaveLength(1);
      });
    });

    describe('history', () => {
      let s: SessionRecord;
      let ids: number[];

      beforeAll(async () => {
        s = await newSession();
        const other = await newSession();
        ids = (await send(s.id, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'm10'])).map(
          (m) => m.id,
        );
        await send(other.id, ['elsewhere']);
        await store.deleteMessage(ids[4]!, BASE);
      });

      const texts = (page: { messages: StoredMessage[] }) => page.messages.map((m) => m.message);

      it('without bounds: the newest page, oldest first, deleted excluded', async () => {
        expect(texts(await store.listMessages(s.id, { limit: 3 }))).toEqual(['m8', 'm9', 'm10']);
        expect((await store.listMessages(s.id, { limit: 3 })).hasMore).toBe(true);
        const all = await store.listMessages(s.id, { limit: 20 });
        expect(texts(all)).toEqual(['m1', 'm2', 'm3', 'm4', 'm6', 'm7', 'm8', 'm9', 'm10']);
        expect(all.hasMore).toBe(false);
        expect(await store.listMessages(s.id, { limit: 9 })).toMatchObject({ hasMore: false });
      });

      it('beforeId pages backward; hasMore says whether older messages exist', async () => {
        const p1 = await store.listMessages(s.id, { limit: 3, beforeId: ids[7]! });
        expect(texts(p1)).toEqual(['m4', 'm6', 'm7']);
        expect(p1.hasMore).toBe(true);
        const p2 = await store.listMessages(s.id, { limit: 3, beforeId: p1.messages[0]!.id });
        expect(texts(p2)).toEqual(['m1', 'm2', 'm3']);
        expect(p2.hasMore).toBe(false);
        expect(await store.listMessages(s.id, { limit: 3, beforeId: ids[0]! })).toEqual({
          messages: [],
          hasMore: false,
          liked: new Set(),
        });
      });

      it('afterId alone pages forward; hasMore says whether newer messages exist', async () => {
        const p1 = await store.listMessages(s.id, { limit: 3, afterId: ids[1]! });
        expect(texts(p1)).toEqual(['m3', 'm4', 'm6']);
        expect(p1.hasMore).toBe(true);
        const p2 = await store.listMessages(s.id, { limit: 3, afterId: ids[6]! });
        expect(texts(p2)).toEqual(['m8', 'm9', 'm10']);
        expect(p2.hasMore).toBe(false);
        expect(await store.listMessages(s.id, { limit: 3, afterId: ids[9]! })).toEqual({
          messages: [],
          hasMore: false,
          liked: new Set(),
        });
      });

      it('both bounds: the newest page inside the range; hasMore says whether older ones in it exist', async () => {
        const p = await store.listMessages(s.id, { limit: 2, afterId: ids[0]!, beforeId: ids[6]! });
        expect(texts(p)).toEqual(['m4', 'm6']);
        expect(p.hasMore).toBe(true);
        const whole = await store.listMessages(s.id, { limit: 5, afterId: ids[0]!, beforeId: ids[6]! });
        expect(texts(whole)).toEqual(['m2', 'm3', 'm4', 'm6']);
        expect(whole.hasMore).toBe(false);
      });

      it('messagesAfter returns every later message in order, at most limit, deleted excluded', async () => {
        expect((await store.messagesAfter(s.id, 0, 100)).map((m) => m.message)).toEqual([
          'm1',
          'm2',
          'm3',
          'm4',
          'm6',
          'm7',
          'm8',
          'm9',
          'm10',
        ]);
        expect((await store.messagesAfter(s.id, ids[2]!, 2)).map((m) => m.message)).toEqual(['m4', 'm6']);
        expect(await store.messagesAfter(s.id, ids[9]!, 10)).toEqual([]);
      });

      it('deleteMessage soft-deletes once and returns the message as it was, marked deleted', async () => {
        const [doomed] = await send(s.id, ['doomed']);
        await store.write(
          batch({ messageLikes: [{ messageId: doomed!.id, userId: 'x', liked: true, at: BASE }] }),
        );
        expect(await store.deleteMessage(doomed!.id, BASE + 5)).toEqual({
          ...doomed,
          likes: 1,
          deleted: true,
        });
        expect(await store.deleteMessage(doomed!.id, BASE + 6)).toBeUndefined();
        expect(await store.deleteMessage(987_654_321, BASE)).toBeUndefined();
        expect(await store.getMessage(doomed!.id)).toBeUndefined();
        expect(await store.getMessage(ids[4]!)).toBeUndefined();
        expect((await store.listMessages(s.id, { limit: 1 })).messages.map((m) => m.message)).toEqual([
          'm10',
        ]);
      });

      it('deletedMessageIds lists the highest deleted ids of a session from a position, ascending', async () => {
        const other = await newSession();
        const [a, b, c, d] = await send(other.id, ['a', 'b', 'c', 'd']);
        const [elsewhere] = await send(s.id, ['elsewhere']);
        for (const m of [a, c, d, elsewhere]) await store.deleteMessage(m!.id, BASE);
        expect(await store.deletedMessageIds(other.id, a!.id, 10)).toEqual([a!.id, c!.id, d!.id]);
        expect(await store.deletedMessageIds(other.id, b!.id, 10)).toEqual([c!.id, d!.id]);
        expect(await store.deletedMessageIds(other.id, 0, 2)).toEqual([c!.id, d!.id]);
        expect(await store.deletedMessageIds(other.id, d!.id + 1, 10)).toEqual([]);
      });

      it('likedMessageIds returns the liked subset', async () => {
        await store.write(
          batch({
            messageLikes: [
              { messageId: ids[0]!, userId: 'fan', liked: true, at: BASE },
              { messageId: ids[2]!, userId: 'fan', liked: true, at: BASE },
              { messageId: ids[3]!, userId: 'someone else', liked: true, at: BASE },
            ],
          }),
        );
        expect(await store.likedMessageIds('fan', [ids[0]!, ids[1]!, ids[2]!, ids[3]!, 987_654_321])).toEqual(
          new Set([ids[0]!, ids[2]!]),
        );
        expect(await store.likedMessageIds('fan', [])).toEqual(new Set());
        expect(await store.likedMessageIds('nobody', ids)).toEqual(new Set());

        // A history page says the same in its own statement, for the page's messages only.
        const page = await store.listMessages(s.id, { limit: 2, beforeId: ids[3]!, likedBy: 'fan' });
        expect(page.messages.map((m) => m.id)).toEqual([ids[1]!, ids[2]!]);
        expect(page.liked).toEqual(new Set([ids[2]!]));
        const all = await store.listMessages(s.id, { limit: 20, likedBy: 'fan' });
        expect(all.liked).toEqual(new Set([ids[0]!, ids[2]!]));
        expect((await store.listMessages(s.id, { limit: 20, likedBy: 'nobody' })).liked).toEqual(new Set());
        expect((await store.listMessages(s.id, { limit: 20 })).liked).toEqual(new Set());
      });

      it('messages read back carry created_at as the wire writes it', async () => {
        for (const m of (await store.listMessages(s.id, { limit: 20 })).messages) {
          expect(m.createdAtText).toBe(new Date(m.createdAt).toISOString());
        }
      });
    });

    it('setWinners replaces the winners of one session', async () => {
      const s = await newSession();
      const other = await newSession();
      await store.setWinners(other.id, ['z'], BASE);
      await store.setWinners(s.id, ['b', 'a', 'a'], BASE);
      expect(await store.getWinners(s.id)).toEqual(['a', 'b']);
      await store.setWinners(s.id, ['c', 'b'], BASE + 1);
      expect(await store.getWinners(s.id)).toEqual(['b', 'c']);
      await store.setWinners(s.id, [], BASE + 2);
      expect(await store.getWinners(s.id)).toEqual([]);
      expect(await store.getWinners(other.id)).toEqual(['z']);
    });

    it('setWinners at the same time from two callers: one of the two sets, never their union; the set kept has the greater version', async () => {
      const s = await newSession();
      let last = 0;
      for (let round = 0; round < 20; round++) {
        const a = [`a${round}`, 'both'];
        const b = [`b${round}`, 'both'];
        const [va, vb] = await Promise.all([
          store.setWinners(s.id, a, BASE + round),
          store.setWinners(s.id, b, BASE + round),
        ]);
        expect(va, `round ${round}`).not.toBe(vb);
        expect(Math.min(va, vb), `round ${round}`).toBeGreaterThan(last);
        last = Math.max(va, vb);
        const winners = await store.getWinners(s.id);
        expect(JSON.stringify([...winners].sort()), `round ${round}`).toBe(
          JSON.stringify([...(va > vb ? a : b)].sort()),
        );
      }
    });

    it('resetViewers marks every viewer inactive', async () => {
      const s1 = await newSession();
      const s2 = await newSession();
      await store.write(
        batch({
          viewers: [
            { sessionId: s1.id, userId: 'r1', active: true, at: BASE },
            { sessionId: s2.id, userId: 'r2', active: true, at: BASE },
          ],
        }),
      );
      expect(await activeViewers(s1.id)).toEqual(['r1']);
      await store.resetViewers();
      expect(await activeViewers(s1.id)).toEqual([]);
      expect(await activeViewers(s2.id)).toEqual([]);
    });

    it('endViewersOfEndedSessions marks inactive the viewers of sessions that ended by then (after a bound, when given), and no other', async () => {
      const early = await newSession();
      const late = await newSession();
      const open = await newSession();
      await store.write(
        batch({
          viewers: [
            { sessionId: early.id, userId: 'e1', active: true, at: BASE },
            { sessionId: late.id, userId: 'l1', active: true, at: BASE },
            { sessionId: late.id, userId: 'l2', active: false, at: BASE },
            { sessionId: open.id, userId: 'o1', active: true, at: BASE },
          ],
        }),
      );
      // `late` and `early` ended by then, `open` not; with the bound, `early` ended too long ago to be looked at.
      const at = late.endsAt + 1;
      expect(await store.endViewersOfEndedSessions(at, at, early.endsAt)).toBe(1);
      expect(await activeViewers(late.id)).toEqual([]);
      expect(await activeViewers(early.id)).toEqual(['e1']);
      expect(await store.endViewersOfEndedSessions(at, at)).toBe(1);
      expect(await activeViewers(early.id)).toEqual([]);
      expect(await activeViewers(open.id)).toEqual(['o1']);
      expect(await store.endViewersOfEndedSessions(at, at)).toBe(0);
    });

    it('stores text verbatim: emoji, RTL, quotes, SQL', async () => {
      // NUL (\u0000) is not tested: PostgreSQL refuses it in text, and the service refuses control characters
      // before anything reaches the store.
      const s = await newSession();
      const texts = [
        "'; DROP TABLE live_chat_messages; --",
        "Robert'); DROP TABLE users;--",
        `"double" 'single' \`back\` \\ backslash %_ like-wildcards $1 ?`,
        '🎉🔥👍🏽 👨‍👩‍👧 family',
        'مرحبا بالعالم',
        'שלום עולם',
        'line one\nline two\r\nline three',
        '  leading and trailing spaces  ',
        'e\u0301 combining, \u200d zero-width joiner',
      ];
      const stored = await store.write(
        batch({
          messages: texts.map((t, i) =>
            msg(s.id, `user '${i}"; --`, t, { username: `نام ${i} 🎲 '--`, clientMsgId: `'${i}; DELETE` }),
          ),
        }),
      );
      const ids = stored.messages.map((r) => r.message.id);
      const page = await store.listMessages(s.id, { limit: 100 });
      expect(page.messages.map((m) => m.message)).toEqual(texts);
      expect(page.messages.map((m) => m.username)).toEqual(texts.map((_, i) => `نام ${i} 🎲 '--`));
      expect(page.messages.map((m) => m.userId)).toEqual(texts.map((_, i) => `user '${i}"; --`));
      expect((await store.getMessage(ids[0]!))?.message).toBe(texts[0]);
      const u = await store.setUserProfile("o'brien; --", { username: "'; DROP TABLE users; --" }, BASE);
      expect(u.username).toBe("'; DROP TABLE users; --");
      expect(await store.getUser("o'brien; --")).toEqual(u);
      // Every table is still there.
      expect(await store.getUser('keep')).toBeDefined();
    });
  });
}

it('opens sqlite::memory:', async () => {
  const memory = createChatStore('sqlite::memory:');
  try {
    await memory.migrate();
    const s = await memory.ensureSession({ drawTime: BASE, startsAt: BASE - HOUR, endsAt: BASE + HOUR });
    const r = await memory.write(batch({ messages: [msg(s.id, 'u1', 'in memory')] }));
    expect((await memory.messagesAfter(s.id, 0, 10)).map((m) => m.id)).toEqual([r.messages[0]!.message.id]);
  } finally {
    await memory.close();
  }
});

describe.skipIf(!pgUp)('ChatStore on postgres only', () => {
  let target: Target;
  let store: ChatStore;

  beforeAll(async () => {
    target = await openTarget('postgres');
    store = createChatStore(target.url);
    await store.migrate();
  });

  afterAll(async () => {
    await store?.close();
    await target?.cleanup();
  });

  it('answers the monitoring queries as written', async () => {
    const now = Date.now();
    const s = await store.ensureSession({ drawTime: now, startsAt: now - HOUR, endsAt: now + HOUR });
    const idle = await store.ensureSession({
      drawTime: now + 10 * HOUR,
      startsAt: now + 9 * HOUR,
      endsAt: now + 11 * HOUR,
    });
    await store.setActiveSession(s.id);
    await store.write(
      batch({
        messages: [
          msg(s.id, 'a', 'recent 1', { createdAt: now - 1000 }),
          msg(s.id, 'b', 'recent 2', { createdAt: now - 30 * 60_000 }),
          msg(s.id, 'a', 'old', { createdAt: now - 2 * HOUR }),
          msg(s.id, 'c', 'recent 3', { createdAt: now }),
        ],
        hearts: [
          { sessionId: s.id, count: 7 },
          { sessionId: idle.id, count: 2 },
        ],
        viewers: [
          { sessionId: s.id, userId: 'a', active: true, at: now },
          { sessionId: s.id, userId: 'b', active: true, at: now },
          { sessionId: s.id, userId: 'c', active: true, at: now },
          { sessionId: s.id, userId: 'c', active: false, at: now },
        ],
      }),
    );

    const client = new pg.Client({ connectionString: target.url });
    await client.connect();
    try {
      const viewers = await client.query('SELECT COUNT(*) FROM live_chat_viewers WHERE is_active = true;');
      expect(Number(viewers.rows[0].count)).toBe(2);
      const recent = await client.query(
        "SELECT COUNT(*) FROM live_chat_messages WHERE created_at > NOW() - INTERVAL '1 hour';",
      );
      expect(Number(recent.rows[0].count)).toBe(3);
      const likes = await client.query('SELECT total_likes FROM live_chat_sessions WHERE is_active = true;');
      expect(likes.rows.map((r) => Number(r.total_likes))).toEqual([7]);
    } finally {
      await client.end();
    }
  });

  it('keeps ids unique and in commit order with four writers on separate pools', async () => {
    const WRITERS = 4;
    const BATCHES = 50;
    const BATCH_SIZE = 5;
    const total = WRITERS * BATCHES * BATCH_SIZE;
    const s = await store.ensureSession({ drawTime: BASE, startsAt: BASE - HOUR, endsAt: BASE + HOUR });
    const writers = Array.from({ length: WRITERS }, () => createChatStore(target.url));
    const poller = createChatStore(target.url);
    try {
      let writing = true;
      const seen: number[] = [];
      let regressions = 0;
      const poll = async (): Promise<void> => {
        let last = 0;
        const drain = async () => {
          for (const m of await poller.messagesAfter(s.id, last, 1000)) {
            if (m.id <= last) regressions++;
            last = m.id;
            seen.push(m.id);
          }
        };
        while (writing) await drain();
        await drain();
      };
      const polling = poll();

      const written = await Promise.all(
        writers.map(async (w, node) => {
          const ids: number[] = [];
          for (let b = 0; b < BATCHES; b++) {
            const result = await w.write(
              batch({
                messages: Array.from({ length: BATCH_SIZE }, (_, i) =>
                  msg(s.id, `node${node}`, `n${node} b${b} m${i}`, { clientMsgId: `${b}-${i}` }),
                ),
              }),
            );
            const batchIds = result.messages.map((r) => r.message.id);
            // Within a batch, ids follow the batch order.
            expect(batchIds).toEqual([...batchIds].sort((x, y) => x - y));
            ids.push(...batchIds);
          }
          return ids;
        }),
      );
      writing = false;
      await polling;

      const all = written.flat();
      expect(new Set(all).size).toBe(total);
      const stored = await store.messagesAfter(s.id, 0, total + 10);
      expect(stored).toHaveLength(total);
      const storedIds = stored.map((m) => m.id);
      for (let i = 1; i < storedIds.length; i++) expect(storedIds[i]!).toBeGreaterThan(storedIds[i - 1]!);
      expect(new Set(storedIds)).toEqual(new Set(all));
      // A reader following messagesAfter(lastSeen) never missed a message and never went backwards: no id
      // became visible before a smaller one.
      expect(regressions).toBe(0);
      expect(seen).toEqual(storedIds);
    } finally {
      await Promise.all([...writers, poller].map((w) => w.close()));
    }
  });
});

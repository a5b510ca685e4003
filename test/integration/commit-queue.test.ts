import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitQueue, type CommitQueueOptions } from '../../src/chat/commit-queue.js';
import { LONG_TURN_MS, LoopGuard } from '../../src/realtime/loop-guard.js';
import { createChatStore } from '../../src/store/kysely-store.js';
import type { ChatStore, WriteBatch } from '../../src/store/types.js';

/** A queue on the real store that keeps every committed batch, and fails the test on a failed commit. */
function recordingQueue(store: ChatStore, options: CommitQueueOptions) {
  const batches: WriteBatch[] = [];
  const queue = new CommitQueue(
    store,
    (batch) => batches.push(batch),
    (err) => {
      throw err;
    },
    options,
  );
  return { queue, batches };
}

const BASE = Date.parse('2030-01-01T00:00:00.000Z');
const HOUR = 3_600_000;

describe('CommitQueue on SQLite', () => {
  let dir: string;
  let store: ChatStore;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'drawchat-queue-'));
    store = createChatStore(`sqlite:${join(dir, 'chat.db')}`);
    await store.migrate();
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes user claims and viewer presence arriving one per turn (a crowd of handshakes) in a few transactions, not one each', async () => {
    const { queue, batches } = recordingQueue(store, { lazyMs: 50 });
    for (let i = 0; i < 200; i++) {
      queue.user({
        id: `crowd-${i}`,
        claimName: `Crowd ${i}`,
        claimPicture: null,
        fallbackName: 'c',
        at: BASE,
      });
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 120));
    expect(batches.length).toBeGreaterThan(0);
    expect(batches.length).toBeLessThanOrEqual(10);
    expect(batches.reduce((n, b) => n + b.users.length, 0)).toBe(200);
    expect(await store.getUser('crowd-199')).toEqual({
      id: 'crowd-199',
      username: 'Crowd 199',
      profilePic: null,
    });

    // Viewer presence too: nobody waits for it either.
    const drawTime = BASE + 10 * HOUR;
    const session = await store.ensureSession({
      drawTime,
      startsAt: drawTime - HOUR,
      endsAt: drawTime + HOUR,
    });
    batches.length = 0;
    for (let i = 0; i < 200; i++) {
      queue.viewer({ sessionId: session.id, userId: `crowd-${i}`, active: true, at: BASE });
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 120));
    expect(batches.length).toBeGreaterThan(0);
    expect(batches.length).toBeLessThanOrEqual(10);
    expect(batches.reduce((n, b) => n + b.viewers.length, 0)).toBe(200);

    // Anything else committed takes the waiting claims along at once; drain writes what is left.
    batches.length = 0;
    queue.user({ id: 'late', claimName: 'Late', claimPicture: null, fallbackName: 'l', at: BASE });
    await queue.hearts(session.id, 1);
    expect(batches).toHaveLength(1);
    expect(batches[0]!.users.map((u) => u.id)).toEqual(['late']);
    queue.user({ id: 'last', claimName: 'Last', claimPicture: null, fallbackName: 'l', at: BASE });
    await queue.close();
    expect(await store.getUser('last')).toEqual({ id: 'last', username: 'Last', profilePic: null });
  });

  it('hearts nobody waits for (from sockets) go in a few transactions within heartMs, not one per turn of the event loop', async () => {
    const session = await store.ensureSession({
      drawTime: BASE + 20 * HOUR,
      startsAt: BASE + 19 * HOUR,
      endsAt: BASE + 21 * HOUR,
    });
    const { queue, batches } = recordingQueue(store, { heartMs: 50 });
    const before = (await store.getSession(session.id))!.totalLikes;
    for (let i = 0; i < 200; i++) {
      queue.addHearts(session.id, 1);
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 120));
    expect(batches.length).toBeGreaterThan(0);
    expect(batches.length).toBeLessThanOrEqual(10);
    expect(batches.flatMap((b) => b.hearts).reduce((n, h) => n + h.count, 0)).toBe(200);
    expect((await store.getSession(session.id))!.totalLikes).toBe(before + 200);

    // One that is waited for (an HTTP heart) goes at once and takes those waiting along.
    batches.length = 0;
    queue.addHearts(session.id, 2);
    expect(await queue.hearts(session.id, 1)).toBe(before + 203);
    expect(batches).toHaveLength(1);
    await queue.close();
  });

  it('in a turn of the event loop that has lasted LONG_TURN_MS, a poke commits what is waited for there and then', async () => {
    const session = await store.ensureSession({
      drawTime: BASE + 30 * HOUR,
      startsAt: BASE + 29 * HOUR,
      endsAt: BASE + 31 * HOUR,
    });
    let writes = 0;
    // The real store, its writes counted.
    const counted = new Proxy(store, {
      get(target, key) {
        if (key === 'write')
          return (batch: WriteBatch) => {
            writes++;
            return target.write(batch);
          };
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const clock = { t: 0 };
    const guard = new LoopGuard({ monotonic: () => clock.t });
    const queue = new CommitQueue(
      counted,
      () => {},
      (err) => {
        throw err;
      },
      { guard },
    );
    const answered = queue.hearts(session.id, 1);
    guard.poke();
    expect(writes).toBe(0);
    // The turn goes on (a poll phase of thousands of frames): the next frame's poke commits.
    clock.t += LONG_TURN_MS;
    guard.poke();
    expect(writes).toBe(1);
    expect(await answered).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(writes).toBe(1);
    await queue.close();
  });
});

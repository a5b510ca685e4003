import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Sequencer } from '../../src/realtime/sequencer.js';
import { storedMessage } from '../support/messages.js';

const msg = (id: number) => storedMessage(id);

/** The database as the sequencer sees it: every committed message, whether or not its publish arrived. */
function setup(committed: number[] = []) {
  const db = [...committed];
  const delivered: number[] = [];
  const fetches: number[] = [];
  let failNext = 0;
  const seq = new Sequencer({
    holdMs: 100,
    fetchAfter: async (_s, afterId) => {
      fetches.push(afterId);
      if (failNext > 0) {
        failNext--;
        throw new Error('database away');
      }
      return db.filter((id) => id > afterId).map(msg);
    },
    deliver: (_s, m) => delivered.push(m.id),
  });
  seq.open(1, 0);
  const arrive = (id: number, prevId: number) => {
    if (!db.includes(id)) db.push(id);
    seq.accept(1, { message: msg(id), prevId, committedAt: 0 });
  };
  return { seq, db, delivered, fetches, arrive, failNextFetch: () => failNext++ };
}

describe('Sequencer [DESIGN §4]', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('delivers messages that arrive in order at once', () => {
    const { arrive, delivered, fetches } = setup();
    arrive(1, 0);
    arrive(2, 1);
    arrive(5, 2); // ids need not be contiguous: the chain is what counts
    expect(delivered).toEqual([1, 2, 5]);
    expect(fetches).toEqual([]);
  });

  it('holds a message that arrives before its predecessor, then delivers both in order', () => {
    const { arrive, delivered, fetches } = setup();
    arrive(1, 0);
    arrive(3, 2);
    expect(delivered).toEqual([1]);
    arrive(2, 1);
    expect(delivered).toEqual([1, 2, 3]);
    vi.advanceTimersByTime(500);
    expect(fetches).toEqual([]);
  });

  it('a catch-up asked for while a read is in flight ends only after a read that began after it: what was committed meanwhile is delivered', async () => {
    // A resume awaits a catch-up for the client's newest message, committed on another node: a read begun before
    // that commit (the safety poll, another resume) cannot hold it, and the resume must not go on without it.
    const db: number[] = [1];
    const delivered: number[] = [];
    const reads: Array<() => void> = [];
    const seq = new Sequencer({
      fetchAfter: (_s, afterId) => {
        const rows = db.filter((id) => id > afterId).map(msg); // what the database holds as the read begins
        return new Promise((resolve) => reads.push(() => resolve(rows)));
      },
      deliver: (_s, m) => delivered.push(m.id),
    });
    seq.open(1, 0);
    const first = seq.catchUp(1);
    db.push(2);
    let secondDone = false;
    const second = seq.catchUp(1).then(() => {
      secondDone = true;
    });
    reads.shift()!();
    await first;
    expect(delivered).toEqual([1]);
    await vi.advanceTimersByTimeAsync(0);
    expect(secondDone).toBe(false);
    expect(reads).toHaveLength(1);
    reads.shift()!();
    await second;
    expect(delivered).toEqual([1, 2]);
    // Several asked for during the same read share one read after it.
    const third = seq.catchUp(1);
    const fourth = seq.catchUp(1);
    const fifth = seq.catchUp(1);
    reads.shift()!();
    await third;
    await vi.advanceTimersByTimeAsync(0);
    expect(reads).toHaveLength(1);
    reads.shift()!();
    await Promise.all([fourth, fifth]);
    expect(reads).toHaveLength(0);
  });

  it('reads a gap that is not filled in time from the database', async () => {
    const { arrive, delivered, db } = setup();
    arrive(1, 0);
    db.push(2); // committed on another node; its publish is lost
    arrive(3, 2);
    expect(delivered).toEqual([1]);
    await vi.advanceTimersByTimeAsync(100);
    expect(delivered).toEqual([1, 2, 3]);
  });

  it('drops duplicates and messages already delivered from the database', async () => {
    const { arrive, delivered, db } = setup();
    arrive(1, 0);
    arrive(1, 0);
    db.push(2, 3);
    arrive(4, 3);
    await vi.advanceTimersByTimeAsync(100);
    arrive(3, 2); // the late publish of a message already read from the database
    arrive(2, 1);
    expect(delivered).toEqual([1, 2, 3, 4]);
  });

  it('catchUp finds a lost last message (no later message shows the gap)', async () => {
    const { seq, arrive, delivered, db } = setup();
    arrive(1, 0);
    db.push(2);
    await seq.catchUp(1);
    expect(delivered).toEqual([1, 2]);
  });

  it('retries when the database is away and loses nothing', async () => {
    const { arrive, delivered, db, failNextFetch, fetches } = setup();
    arrive(1, 0);
    db.push(2);
    failNextFetch();
    arrive(3, 2);
    await vi.advanceTimersByTimeAsync(100);
    expect(delivered).toEqual([1]);
    await vi.advanceTimersByTimeAsync(400);
    expect(fetches.length).toBe(2);
    expect(delivered).toEqual([1, 2, 3]);
  });

  it('a message that arrives during a read is not delivered past a predecessor that read could not see', async () => {
    const db = [1];
    const delivered: number[] = [];
    let gate: Promise<void> | undefined;
    const seq = new Sequencer({
      holdMs: 100,
      fetchAfter: async (_s, afterId) => {
        // A read sees what was committed when it started.
        const snapshot = db.filter((id) => id > afterId).map(msg);
        await gate;
        return snapshot;
      },
      deliver: (_s, m) => delivered.push(m.id),
    });
    seq.open(1, 0);
    let release = () => {};
    gate = new Promise((r) => {
      release = r;
    });
    const reading = seq.catchUp(1);
    db.push(2, 3); // committed after the read started; the publish of 2 is lost, that of 3 arrives
    seq.accept(1, { message: msg(3), prevId: 2, committedAt: 0 });
    gate = undefined;
    release();
    await reading;
    await vi.advanceTimersByTimeAsync(1000);
    expect(delivered).toEqual([1, 2, 3]);
  });

  it('never delivers to a closed session', async () => {
    const { seq, arrive, delivered } = setup();
    seq.close(1);
    arrive(1, 0);
    await seq.catchUp(1);
    expect(delivered).toEqual([]);
  });

  it('finish (a window closes): reads what was not delivered yet, delivers what is still held in id order, then closes; close alone drops what is held', async () => {
    // 2 was committed on another node and its publish has not come; 3 (ours) is held behind it.
    const a = setup([1, 2]);
    a.arrive(1, 0);
    a.arrive(3, 2);
    expect(a.delivered).toEqual([1]);
    // 4 is committed elsewhere and its publish will never come.
    a.db.push(4);
    await a.seq.finish(1, 1000);
    expect(a.delivered).toEqual([1, 2, 3, 4]);
    a.arrive(5, 4);
    expect(a.delivered).toEqual([1, 2, 3, 4]);

    // With the database away, what is held is still delivered, within the time allowed.
    const b = setup([1, 2]);
    b.arrive(1, 0);
    b.arrive(3, 2);
    b.failNextFetch();
    await b.seq.finish(1, 1000);
    expect(b.delivered).toEqual([1, 3]);

    const c = setup([1, 2]);
    c.arrive(1, 0);
    c.arrive(3, 2);
    c.seq.close(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(c.delivered).toEqual([1]);
  });
});

import { describe, expect, it, vi } from 'vitest';
import type { ServerEvent } from '../../src/protocol/messages.js';
import { Hub, type HubOptions } from '../../src/realtime/hub.js';
import { LoopLoad } from '../../src/realtime/loop-load.js';
import type { HubSocket } from '../../src/realtime/socket.js';

/** An event loop with slack: ticks keep their usual spacing (see HubOptions.loopUtilization). */
const idleLoop = () => 0;

/** An in-memory socket: records each write (one `send`, or the frames between cork and uncork). */
class MemorySocket implements HubSocket {
  readonly writes: string[][] = [];
  #corked: string[] | undefined;
  bufferedAmount = 0;
  isOpen = true;
  send(data: string): void {
    if (this.#corked) this.#corked.push(data);
    else this.writes.push([data]);
  }
  close(): void {
    this.isOpen = false;
  }
  cork(): void {
    this.#corked = [];
  }
  uncork(): void {
    if (this.#corked?.length) this.writes.push(this.#corked);
    this.#corked = undefined;
  }
  /** Every event received, in order, whatever the framing. */
  events(): ServerEvent[] {
    return this.writes.flat().flatMap((f) => {
      const v = JSON.parse(f) as ServerEvent | ServerEvent[];
      return Array.isArray(v) ? v : [v];
    });
  }
}

const SESSION = 7;
const message = (id: number): ServerEvent => ({
  type: 'new_message',
  message: {
    id,
    session_id: SESSION,
    user_id: 'u',
    username: 'u',
    profile_pic: null,
    message: `m${id}`,
    created_at: '2030-01-01T00:00:00.000Z',
    likes: 0,
    liked_by_me: false,
    is_winner: false,
    is_host: false,
  },
});
/** Stands for `init` (the hub only forwards it). */
const initEvent = (): ServerEvent => ({ type: 'viewer_count_update', session_id: SESSION, viewer_count: 1 });
const ids = (s: MemorySocket) => s.events().flatMap((e) => (e.type === 'new_message' ? [e.message.id] : []));
const turn = () => new Promise((r) => setImmediate(r));

/** A socket whose every write costs `ms` of the hub's monotonic clock. */
class SlowSocket extends MemorySocket {
  constructor(
    private readonly clock: { t: number },
    private readonly ms: number,
  ) {
    super();
  }
  override send(data: string): void {
    this.clock.t += this.ms;
    super.send(data);
  }
}

describe('Hub', () => {
  it('a large init (a long resume on a slow link) is not taken for a slow consumer: the send-buffer limit counts from after it, and applies as usual once the buffer has drained below it', async () => {
    const hub = new Hub({ tickCostFactor: 0, maxBufferedBytes: 1000 });
    const slow = new MemorySocket();
    const resume = JSON.stringify({
      type: 'viewer_count_update',
      session_id: SESSION,
      viewer_count: 1,
      pad: 'x'.repeat(5000),
    });
    hub.ready(hub.join({ sessionId: SESSION, userId: 'a', batch: true, socket: slow }), resume, 0);
    // The link is slow: none of the init has left yet.
    slow.bufferedAmount = resume.length;
    hub.publish(SESSION, message(1));
    await turn();
    expect(slow.isOpen).toBe(true);
    expect(ids(slow)).toEqual([1]);
    slow.bufferedAmount = resume.length + 900;
    hub.publish(SESSION, message(2));
    await turn();
    expect(ids(slow)).toEqual([1, 2]);
    // Drained below the limit: from now on the limit is the limit.
    slow.bufferedAmount = 800;
    hub.publish(SESSION, message(3));
    await turn();
    expect(ids(slow)).toEqual([1, 2, 3]);
    slow.bufferedAmount = 1500;
    hub.publish(SESSION, message(4));
    await turn();
    expect(slow.isOpen).toBe(false);
    expect(ids(slow)).toEqual([1, 2, 3]);
    // Past the allowance an init gives, a socket that does not read is cut off as before.
    const stalled = new MemorySocket();
    hub.ready(hub.join({ sessionId: SESSION, userId: 'b', batch: true, socket: stalled }), resume, 0);
    stalled.bufferedAmount = resume.length + 1001;
    hub.publish(SESSION, message(5));
    await turn();
    expect(stalled.isOpen).toBe(false);
  });

  it('a connection that becomes ready while messages are queued gets each message once: init has some, the tick the rest', async () => {
    for (const batch of [false, true]) {
      const hub = new Hub({ tickCostFactor: 0 });
      const old = new MemorySocket();
      hub.ready(hub.join({ sessionId: SESSION, userId: 'a', batch, socket: old }), initEvent(), 0);
      const fresh = new MemorySocket();
      const handle = hub.join({ sessionId: SESSION, userId: 'b', batch, socket: fresh });
      // Messages 1 and 2 are committed and queued for the room in the turn in which `init` is built from a
      // history that already holds message 1; message 3 comes after.
      hub.publish(SESSION, message(1));
      hub.publish(SESSION, message(2));
      hub.ready(handle, initEvent(), 1);
      // Ready does not flush the room: the other socket was not written to.
      expect(old.writes).toHaveLength(1);
      hub.publish(SESSION, message(3));
      await turn();
      expect(ids(old)).toEqual([1, 2, 3]);
      expect(ids(fresh)).toEqual([2, 3]);
      // One write per socket for the tick, whatever the client kind.
      expect(old.writes).toHaveLength(2);
      expect(fresh.writes).toHaveLength(2);
      // The skip applied to that one tick only.
      hub.publish(SESSION, message(4));
      await turn();
      expect(ids(fresh)).toEqual([2, 3, 4]);
    }
  });

  it('a reconnect storm does not write the room once per resume', async () => {
    const hub = new Hub({ tickCostFactor: 0 });
    const viewers = Array.from({ length: 50 }, (_, i) => {
      const socket = new MemorySocket();
      hub.ready(hub.join({ sessionId: SESSION, userId: `v${i}`, batch: true, socket }), initEvent(), 0);
      return socket;
    });
    hub.publish(SESSION, message(1));
    for (let i = 0; i < 100; i++) {
      const s = new MemorySocket();
      hub.ready(hub.join({ sessionId: SESSION, userId: `r${i}`, batch: true, socket: s }), initEvent(), 0);
    }
    await turn();
    for (const v of viewers) {
      expect(v.writes).toHaveLength(2);
      expect(ids(v)).toEqual([1]);
    }
  });
});

/**
 * A room of ten sockets at 15 ms a write on the hub's clock: a tick costs 150 ms, more than `maxTickMs` (100), so
 * once message 1 is out the next tick is due at once.
 */
async function busyRoom(options: HubOptions = {}) {
  const clock = { t: 1_000 };
  const hub = new Hub({
    tickCostFactor: 2,
    maxTickMs: 100,
    monotonic: () => clock.t,
    loopUtilization: idleLoop,
    ...options,
  });
  const viewers = Array.from({ length: 10 }, (_, i) => {
    const socket = new SlowSocket(clock, 15);
    hub.ready(hub.join({ sessionId: SESSION, userId: `v${i}`, batch: true, socket }), initEvent(), 0);
    return socket;
  });
  hub.publish(SESSION, message(1));
  await turn();
  expect(viewers[0]!.writes).toHaveLength(2);
  return { hub, viewers, clock };
}

describe('Hub ticks', () => {
  it('an overdue tick of a busy room takes what was queued in the loop before it runs (frames read during the last tick, committed after it)', async () => {
    const { hub, viewers } = await busyRoom();
    // On a server: a commit publishes message 2, which schedules the next tick; frames read while the last tick
    // was being written are committed in the same turn as that tick runs, queued after it was scheduled.
    await new Promise<void>((done) => {
      setImmediate(() => {
        hub.publish(SESSION, message(2));
        setImmediate(() => hub.publish(SESSION, message(3)));
        setImmediate(() => setImmediate(() => setImmediate(done)));
      });
    });
    await turn();
    for (const v of viewers) {
      expect(ids(v)).toEqual([1, 2, 3]);
      // Messages 2 and 3 in one tick: one write, not one tick later each.
      expect(v.writes).toHaveLength(3);
    }
    hub.closeAll(1001, 'test');
  });
});

describe('Hub ticks during a reconnect storm', () => {
  it('while a room fills fast its ticks wait up to stormTickCostFactor times their cost (at most stormMaxTickMs); otherwise tickCostFactor and maxTickMs', async () => {
    for (const storm of [false, true]) {
      const clock = { t: 1_000 };
      const hub = new Hub({ stormJoinsPerSecond: 10, monotonic: () => clock.t, loopUtilization: idleLoop });
      // Ten sockets at 10 ms a write: a tick costs 100 ms. Without a storm the joins are long past.
      const viewers = Array.from({ length: 10 }, (_, i) => {
        const socket = new SlowSocket(clock, 10);
        hub.ready(hub.join({ sessionId: SESSION, userId: `v${i}`, batch: true, socket }), initEvent(), 0);
        return socket;
      });
      if (!storm) clock.t += 2_000;
      hub.publish(SESSION, message(1));
      await turn();
      expect(ids(viewers[0]!)).toEqual([1]);
      // Due at once without a storm (2 × 100 ms, at most 100 ms after the last tick started, which is now);
      // in a storm 250 ms after it started (4 × 100 ms, at most 250 ms): 150 ms from now.
      hub.publish(SESSION, message(2));
      for (let i = 0; i < 4; i++) await turn();
      expect(ids(viewers[0]!)).toEqual(storm ? [1] : [1, 2]);
      if (storm) {
        await new Promise((r) => setTimeout(r, 100));
        expect(ids(viewers[0]!)).toEqual([1]);
        await new Promise((r) => setTimeout(r, 80));
        expect(ids(viewers[0]!)).toEqual([1, 2]);
      }
      hub.closeAll(1001, 'test');
    }
  });

  it('a storm is joins at stormJoinsPerSecond or more over the current or the previous half second', async () => {
    const clock = { t: 1_000 };
    const hub = new Hub({ stormJoinsPerSecond: 10, monotonic: () => clock.t, loopUtilization: idleLoop });
    const join = (n: number) => {
      for (let i = 0; i < n; i++) {
        const socket = new SlowSocket(clock, 0);
        hub.ready(
          hub.join({ sessionId: SESSION, userId: `u${clock.t}-${i}`, batch: true, socket }),
          initEvent(),
          0,
        );
      }
    };
    join(4);
    expect(hub.isFilling(SESSION)).toBe(false);
    join(1);
    expect(hub.isFilling(SESSION)).toBe(true);
    clock.t += 750; // the previous half second had five
    expect(hub.isFilling(SESSION)).toBe(true);
    join(1);
    clock.t += 500; // one join in the last half second, none since
    expect(hub.isFilling(SESSION)).toBe(false);
    expect(hub.isFilling(SESSION + 1)).toBe(false);
    hub.closeAll(1001, 'test');
  });
});

/**
 * Message 2 makes a busy room's overdue tick due (`afterPublish` runs right after, in the same turn); a turn
 * later, frames are read and their commit is queued (`setQueued(true)`), and that commit publishes message 3 in
 * the turn after.
 */
async function commitAfterOverdueTick(
  hub: Hub,
  setQueued: (queued: boolean) => void,
  afterPublish = () => {},
) {
  await new Promise<void>((done) => {
    setImmediate(() => {
      hub.publish(SESSION, message(2));
      afterPublish();
      setImmediate(() => {
        setQueued(true);
        setImmediate(() => {
          hub.publish(SESSION, message(3));
          setQueued(false);
        });
      });
      setImmediate(() => setImmediate(() => setImmediate(() => setImmediate(done))));
    });
  });
  await turn();
}

describe('Hub ticks waiting for pending work', () => {
  it('an overdue tick waits, a turn at a time, while work that will publish is pending (a commit of frames read just before it)', async () => {
    for (const withPending of [true, false]) {
      let queued = false;
      const { hub, viewers } = await busyRoom(withPending ? { pendingWork: () => queued } : {});
      await commitAfterOverdueTick(hub, (q) => {
        queued = q;
      });
      for (const v of viewers) {
        expect(ids(v)).toEqual([1, 2, 3]);
        // With pendingWork the tick waited for message 3's commit: one write for 2 and 3; without, one each.
        expect(v.writes).toHaveLength(withPending ? 3 : 4);
      }
      hub.closeAll(1001, 'test');
    }
  });

  it('an overdue tick scheduled late in a long poll phase still waits for the commit of what that phase read (its deferrals count from its first run)', async () => {
    let queued = false;
    const { hub, viewers, clock } = await busyRoom({ pendingWork: () => queued });
    await commitAfterOverdueTick(
      hub,
      (q) => {
        queued = q;
      },
      // The rest of a long poll phase: 20 ms pass before the loop reaches its check phase.
      () => {
        clock.t += 20;
      },
    );
    for (const v of viewers) {
      expect(ids(v)).toEqual([1, 2, 3]);
      expect(v.writes).toHaveLength(3);
    }
    hub.closeAll(1001, 'test');
  });

  it('waits at most maxDeferrals turns', async () => {
    const clock = { t: 1_000 };
    const hub = new Hub({
      tickCostFactor: 2,
      maxTickMs: 100,
      monotonic: () => clock.t,
      loopUtilization: idleLoop,
      pendingWork: () => true,
    });
    const socket = new SlowSocket(clock, 150);
    hub.ready(hub.join({ sessionId: SESSION, userId: 'v', batch: true, socket }), initEvent(), 0);
    hub.publish(SESSION, message(1));
    await turn();
    hub.publish(SESSION, message(2));
    // Due now: written after the first turn plus at most four more, although work is always pending.
    for (let i = 0; i < 6; i++) await turn();
    expect(ids(socket)).toEqual([1, 2]);
    hub.closeAll(1001, 'test');
  });
});

describe('Hub count updates', () => {
  /** Count updates received after `init` (which `initEvent` stands in for with a count of its own). */
  const counts = (s: MemorySocket) =>
    s
      .events()
      .slice(1)
      .filter((e) => e.type === 'viewer_count_update').length;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('a small room gets counts every countIntervalMs; a big one no more often than ten of its ticks cost', async () => {
    for (const [sockets, costPerWrite] of [
      [5, 1], // a tick costs 5 ms: the count interval (60 ms) holds
      [20, 10], // a tick costs 200 ms: counts at most every 2 s
    ] as const) {
      const clock = { t: 1_000 };
      const hub = new Hub({
        countIntervalMs: 60,
        tickCostFactor: 0,
        monotonic: () => clock.t,
        loopUtilization: idleLoop,
      });
      const viewers = Array.from({ length: sockets }, (_, i) => {
        const socket = new SlowSocket(clock, costPerWrite);
        hub.ready(hub.join({ sessionId: SESSION, userId: `v${i}`, batch: true, socket }), initEvent(), 0);
        return socket;
      });
      hub.publish(SESSION, message(1));
      await turn();
      // The first count goes at once, the next change once the room's count interval has passed.
      hub.setViewerCount(SESSION, 1);
      await sleep(5);
      await turn();
      expect(counts(viewers[0]!)).toBe(1);
      hub.setViewerCount(SESSION, 2);
      await sleep(150);
      await turn();
      expect(counts(viewers[0]!)).toBe(sockets === 5 ? 2 : 1);
      // Both rooms still get every message at once (counts wait, messages do not).
      hub.publish(SESSION, message(2));
      await turn();
      expect(ids(viewers[0]!)).toEqual([1, 2]);
      hub.closeAll(1001, 'test');
    }
  });

  it('a room’s count updates stay within countWritesPerSecond socket writes (at most 2 s apart); messages never wait', async () => {
    vi.useFakeTimers();
    try {
      // [sockets, ms between two count updates]: 4 sockets at 100 writes/s could have one every 40 ms, the
      // 60 ms interval holds; 20 → 200 ms; 1,000 → 10 s, capped at 2 s.
      for (const [sockets, gap] of [
        [4, 60],
        [20, 200],
        [1_000, 2_000],
      ] as const) {
        const hub = new Hub({
          countIntervalMs: 60,
          countWritesPerSecond: 100,
          tickCostFactor: 0,
          monotonic: () => Date.now(),
          loopUtilization: idleLoop,
        });
        const viewers = Array.from({ length: sockets }, (_, i) => {
          const socket = new MemorySocket();
          hub.ready(hub.join({ sessionId: SESSION, userId: `v${i}`, batch: true, socket }), initEvent(), 0);
          return socket;
        });
        const first = viewers[0]!;
        hub.setViewerCount(SESSION, 1);
        await vi.advanceTimersByTimeAsync(1);
        expect(counts(first)).toBe(1);
        hub.setViewerCount(SESSION, 2);
        await vi.advanceTimersByTimeAsync(gap - 5);
        expect(counts(first), `${sockets} sockets: not before ${gap} ms`).toBe(1);
        hub.publish(SESSION, message(1));
        await vi.advanceTimersByTimeAsync(1);
        expect(ids(first), `${sockets} sockets: the message at once`).toEqual([1]);
        await vi.advanceTimersByTimeAsync(10);
        expect(counts(first), `${sockets} sockets: by ${gap} ms`).toBe(2);
        hub.closeAll(1001, 'test');
      }
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('Hub ticks on a saturated event loop', () => {
  /**
   * A hub whose ten sockets cost 15 ms a write on its clock (a tick costs 150 ms), and `round()`: a new window of
   * load (300 ms on), a message written, then one published right after its tick; the real ms until written.
   */
  const saturatedHub = (loopUtilization: () => number) => {
    const clock = { t: 1_000 };
    /** Each spacing factor the hub reported (`onTickSpacing`). */
    const spacings: number[] = [];
    const hub = new Hub({
      tickCostFactor: 2,
      maxTickMs: 100,
      stormMaxTickMs: 250,
      monotonic: () => clock.t,
      loopUtilization,
      onTickSpacing: (factor) => spacings.push(factor),
    });
    const viewers = Array.from({ length: 10 }, (_, i) => {
      const socket = new SlowSocket(clock, 15);
      hub.ready(hub.join({ sessionId: SESSION, userId: `v${i}`, batch: true, socket }), initEvent(), 0);
      return socket;
    });
    const first = viewers[0]!;
    let id = 0;
    const round = async (): Promise<number> => {
      clock.t += 300;
      const a = ++id;
      hub.publish(SESSION, message(a));
      for (let i = 0; i < 3 && !ids(first).includes(a); i++) await turn();
      expect(ids(first)).toContain(a);
      const b = ++id;
      const started = performance.now();
      hub.publish(SESSION, message(b));
      while (!ids(first).includes(b)) {
        if (performance.now() - started > 1_000) throw new Error(`message ${b} was never written`);
        await new Promise((r) => setTimeout(r, 2));
      }
      return performance.now() - started;
    };
    const rounds = async (n: number): Promise<number[]> => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) ms.push(await round());
      return ms;
    };
    return { hub, rounds, spacings };
  };

  it('while the loop has had no slack for a second, busy rooms’ ticks spread out, a quarter more each window up to stormMaxTickMs, and come back a quarter for each window with slack', async () => {
    let busy = 1;
    const { hub, rounds, spacings } = saturatedHub(() => busy);
    // One window a round. The gap after a 150 ms tick stays 100 ms (due at once) for three saturated windows;
    // from the fourth it is 100 ms × 1.25^(n-3): due at once for n = 4 (125 ms), 100 ms after the tick ended
    // from n = 8 on (250 ms).
    const saturated = await rounds(9);
    for (const ms of saturated.slice(0, 4)) expect(ms).toBeLessThan(40);
    expect(saturated[7]!).toBeGreaterThan(80);
    expect(saturated[8]!).toBeGreaterThan(80);
    // Reported as it changes (the `drawchat_tick_spacing_factor` gauge): up a quarter a window from the fourth, to
    // at most stormMaxTickMs / maxTickMs.
    expect(spacings).toEqual([1.25, 1.5625, 1.953125, 2.44140625, 2.5]);
    // Slack again: back a quarter a window, to the usual gap (100 ms: due at once after a 150 ms tick).
    busy = 0.9;
    const relieved = await rounds(6);
    expect(relieved[0]!).toBeGreaterThan(30);
    expect(relieved[5]!).toBeLessThan(40);
    expect(spacings.slice(5)).toEqual([2, 1.6, 1.28, 1.024, 1]);
    hub.closeAll(1001, 'test');
  });

  it('counts every window of the loop’s load, also those in which no tick was scheduled: a node gone quiet after a storm is back at the usual pace', () => {
    // Before, the hub read the load only when it scheduled a tick: after a storm, a quiet minute counted as one
    // window with slack (a quarter back), and the spacing, and its gauge, stayed up on a node with nothing to send.
    const clock = { t: 0 };
    let busy = 1;
    const load = new LoopLoad({ monotonic: () => clock.t, loopUtilization: () => busy, timer: false });
    const spacings: number[] = [];
    const hub = new Hub({ monotonic: () => clock.t, loopLoad: load, onTickSpacing: (f) => spacings.push(f) });
    const windows = (n: number) => {
      for (let i = 0; i < n; i++) {
        clock.t += 250;
        load.poll(); // what the load's timer does every window
      }
    };
    windows(6);
    // Six saturated windows, none read by the hub as they ended: the fourth, fifth and sixth each count.
    expect(hub.tickSpacing).toBeCloseTo(1.25 ** 3, 10);
    busy = 0.2;
    windows(40);
    expect(hub.tickSpacing).toBe(1);
    expect(spacings).toEqual([1.25 ** 3, 1]);
  });

  it('a loop saturated in single windows, as at the edge of a fan-out whose ticks are most of its work, keeps the usual gap', async () => {
    // Busy 100 % and 90 % in turn: before, each saturated window stretched the gap and the others held it, so a
    // room at the edge of its capacity had its ticks spaced out for good after a few seconds.
    let n = 0;
    const { hub, rounds, spacings } = saturatedHub(() => (n++ % 2 === 0 ? 1 : 0.9));
    for (const ms of await rounds(10)) expect(ms).toBeLessThan(40);
    expect(spacings).toEqual([]);
    hub.closeAll(1001, 'test');
  });
});

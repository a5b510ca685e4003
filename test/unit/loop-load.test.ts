import { describe, expect, it } from 'vitest';
import { LoopLoad } from '../../src/realtime/loop-load.js';

describe('LoopLoad (clock and loop load injected)', () => {
  function loadOf(busy: number[], history?: number, lateIsSaturated?: boolean) {
    const clock = { t: 0 };
    const loads = [...busy];
    const load = new LoopLoad({
      monotonic: () => clock.t,
      loopUtilization: () => loads.shift() ?? 0,
      windowMs: 250,
      history,
      timer: false,
      lateIsSaturated,
    });
    return { clock, load };
  }

  it('ends a window at the first read after windowMs, with the busy share of that window', () => {
    const { clock, load } = loadOf([0.5, 1]);
    clock.t = 249;
    expect(load.since(0)).toEqual([]);
    clock.t = 300;
    expect(load.since(0)).toEqual([{ seq: 1, start: 0, end: 300, busy: 0.5, saturated: false }]);
    // Read again before the next window ends: nothing new for a reader that has seen window 1.
    expect(load.since(1)).toEqual([]);
    clock.t = 600;
    expect(load.since(1)).toEqual([{ seq: 2, start: 300, end: 600, busy: 1, saturated: true }]);
  });

  it('counts a window as saturated from 95 % busy, or when it ended a whole window late whatever its share', () => {
    // 0.94: 4,000 ms of one busy turn in a window that had 250 ms of slack before it (the loop could not run the
    // timer meanwhile, and read nothing).
    // Polled by hand here, as the timer would: `lateIsSaturated` as with the timer.
    const { clock, load } = loadOf([0.94, 0.95, 0.94, 0.94, 0.94], undefined, true);
    const end = (t: number) => {
      clock.t = t;
      load.poll();
    };
    end(300); // 300 ms: on time
    end(550);
    end(4_800); // 4,250 ms: late
    end(5_299); // 499 ms: late, but not by a whole window
    expect(load.since(0).map((w) => w.saturated)).toEqual([false, true, true, false]);
    // Without the timer a window ends when it is read: a late read shows nothing.
    const unread = loadOf([0.94], undefined, undefined);
    unread.clock.t = 4_250;
    expect(unread.load.since(0).map((w) => w.saturated)).toEqual([false]);
  });

  it('gives each reader every window ended since its own last read, oldest first, of the last `history`', () => {
    const { clock, load } = loadOf([0.1, 0.2, 0.3, 0.4, 0.5], 3);
    for (let i = 1; i <= 5; i++) {
      clock.t = i * 250;
      load.poll();
    }
    expect(load.since(3).map((w) => w.busy)).toEqual([0.4, 0.5]);
    // Windows 1 and 2 are no longer kept: a reader that last saw none gets the three that are.
    expect(load.since(0).map((w) => w.seq)).toEqual([3, 4, 5]);
    expect(load.since(5)).toEqual([]);
  });

  it('keeps each reader’s place: fresh on its first windows and after windows it missed were dropped', () => {
    const { clock, load } = loadOf([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 2);
    const a = load.reader();
    const b = load.reader();
    const end = (t: number) => {
      clock.t = t;
      load.poll();
    };
    expect(a.read()).toEqual({ windows: [], fresh: false });
    end(250);
    expect(a.read()).toMatchObject({ windows: [{ seq: 1 }], fresh: true });
    end(500);
    expect(a.read()).toMatchObject({ windows: [{ seq: 2 }], fresh: false });
    end(750);
    end(1000);
    end(1250);
    // Two kept (4 and 5): a missed window 3, so its run starts again; b's first read is fresh too.
    expect(a.read()).toMatchObject({ windows: [{ seq: 4 }, { seq: 5 }], fresh: true });
    expect(b.read()).toMatchObject({ windows: [{ seq: 4 }, { seq: 5 }], fresh: true });
    end(1500);
    expect(b.read()).toMatchObject({ windows: [{ seq: 6, busy: 0.6 }], fresh: false });
  });

  it('ends windows on its own timer once read, so a reader that comes late sees them one by one', async () => {
    const load = new LoopLoad({ windowMs: 20, loopUtilization: () => 0.3 });
    expect(load.since(0)).toEqual([]);
    await new Promise((r) => setTimeout(r, 200));
    const windows = load.since(0);
    // At least a few windows of about 20 ms, not one window of 200 ms ended by this read.
    expect(windows.length).toBeGreaterThanOrEqual(3);
    for (const w of windows) expect(w.busy).toBe(0.3);
    expect(windows.at(-1)!.start - windows[0]!.start).toBeGreaterThan(0);
    expect(Math.min(...windows.map((w) => w.end - w.start))).toBeLessThan(150);
  });
});

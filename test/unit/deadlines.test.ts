import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadlines, type WithDeadline } from '../../src/domain/deadlines.js';

interface Item extends WithDeadline {
  name: string;
}
const item = (name: string): Item => ({ name, deadline: 0, deadlineSlot: -1 });

describe('Deadlines (one timer for every socket’s token expiry)', () => {
  let now = 0;
  let fired: string[] = [];
  const make = () =>
    new Deadlines<Item>(
      () => now,
      (i) => fired.push(i.name),
    );
  /** Moves the clock and the (fake) timers together. */
  const advance = (ms: number) => {
    now += ms;
    vi.advanceTimersByTime(ms);
  };

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    now = 1_000;
    fired = [];
  });
  afterEach(() => vi.useRealTimers());

  it('fires each item once, at its deadline, earliest first; cancelled and moved deadlines are respected', () => {
    const d = make();
    const [a, b, c, e] = ['a', 'b', 'c', 'e'].map(item) as [Item, Item, Item, Item];
    d.set(c, 1_300);
    d.set(a, 1_100);
    d.set(b, 1_200);
    d.set(e, 1_250);
    d.delete(e);
    d.set(b, 1_050); // moved earlier
    d.set(a, 1_400); // moved later
    expect(d.size).toBe(3);
    advance(49);
    expect(fired).toEqual([]);
    advance(1);
    expect(fired).toEqual(['b']);
    advance(250);
    expect(fired).toEqual(['b', 'c']);
    advance(100);
    expect(fired).toEqual(['b', 'c', 'a']);
    advance(10_000);
    expect(fired).toEqual(['b', 'c', 'a']);
    expect(d.size).toBe(0);
    expect([a, b, c, e].map((i) => i.deadlineSlot)).toEqual([-1, -1, -1, -1]);
  });

  it('a deadline already past fires at the next timer turn; an item may set a new deadline from onDue', () => {
    const d = new Deadlines<Item>(
      () => now,
      (i) => {
        fired.push(i.name);
        if (i.name === 'again' && fired.length < 3) d.set(i, now + 10);
      },
    );
    d.set(item('late'), 500);
    d.set(item('again'), 1_005);
    advance(0);
    expect(fired).toEqual(['late']);
    advance(5);
    expect(fired).toEqual(['late', 'again']);
    advance(10);
    expect(fired).toEqual(['late', 'again', 'again']);
    advance(100);
    expect(fired).toEqual(['late', 'again', 'again']);
  });

  it('the timer only says when to look: a clock that has not reached the deadline yet is waited for again', () => {
    const d = make();
    d.set(item('x'), 1_100);
    vi.advanceTimersByTime(100); // the timer fires, but the injected clock says 1000: 100 ms to go
    expect(fired).toEqual([]);
    now = 1_050;
    vi.advanceTimersByTime(100); // looks again: the clock says 50 ms to go
    expect(fired).toEqual([]);
    now = 1_100;
    vi.advanceTimersByTime(50);
    expect(fired).toEqual(['x']);
  });

  it('agrees with a sorted list over random sets, moves and deletes', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const d = make();
    const items = Array.from({ length: 200 }, (_, i) => item(`i${i}`));
    const model = new Map<Item, number>();
    for (let step = 0; step < 5_000; step++) {
      const it = items[Math.floor(random() * items.length)]!;
      if (random() < 0.25) {
        d.delete(it);
        model.delete(it);
      } else {
        const at = now + 1 + Math.floor(random() * 1_000);
        d.set(it, at);
        model.set(it, at);
      }
      if (step % 50 === 49) {
        advance(Math.floor(random() * 100));
        const due = [...model].filter(([, at]) => at <= now);
        for (const [i] of due) model.delete(i);
        // Everything due fired; nothing else did.
        expect(new Set(fired)).toEqual(new Set(due.map(([i]) => i.name)));
        fired = [];
      }
      expect(d.size).toBe(model.size);
    }
  });

  it('stop: nothing fires any more', () => {
    const d = make();
    d.set(item('never'), 1_010);
    d.stop();
    d.set(item('never either'), 1_020);
    advance(1_000);
    expect(fired).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { LONG_TURN_MS, LoopGuard } from '../../src/realtime/loop-guard.js';

const turn = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('LoopGuard', () => {
  it('runs deferred work from its setImmediate or timer when the loop comes round to it, once', async () => {
    const guard = new LoopGuard();
    const ran: string[] = [];
    guard.immediate(() => ran.push('immediate'), LONG_TURN_MS);
    guard.timeout(() => ran.push('timeout'), 20);
    expect(guard.size).toBe(2);
    guard.poke();
    expect(ran).toEqual([]);
    await turn();
    expect(ran).toEqual(['immediate']);
    await sleep(40);
    expect(ran).toEqual(['immediate', 'timeout']);
    guard.poke();
    expect(ran).toEqual(['immediate', 'timeout']);
    expect(guard.size).toBe(0);
  });

  it('runs from a poke what has fallen due while the turn goes on, and not again from its own callback', async () => {
    const clock = { t: 0 };
    const guard = new LoopGuard({ monotonic: () => clock.t });
    const ran: string[] = [];
    guard.immediate(() => ran.push('commit'), 5);
    guard.timeout(() => ran.push('tick'), 100);
    clock.t = 4;
    guard.poke();
    expect(ran).toEqual([]);
    clock.t = 5;
    guard.poke();
    expect(ran).toEqual(['commit']);
    clock.t = 150;
    guard.poke();
    expect(ran).toEqual(['commit', 'tick']);
    await turn();
    await sleep(120);
    expect(ran).toEqual(['commit', 'tick']);
  });

  it('in a real turn that has lasted LONG_TURN_MS, a poke runs the work deferred to its end', () => {
    const guard = new LoopGuard();
    let ran = false;
    const task = guard.immediate(() => {
      ran = true;
    }, LONG_TURN_MS);
    // Spin until it is due, then poke once. (Poking while spinning, up to a deadline, failed now and then on a
    // loaded machine: a process descheduled right after a poke read the clock just short of `at` woke up past
    // the deadline and poked no more.)
    while (performance.now() < task.at) guard.poke();
    guard.poke();
    // Still the same turn of the event loop: only the poke can have run it.
    expect(ran).toBe(true);
  });

  it('runs due work earliest first; work added meanwhile waits for a later poke; a cancelled task never runs', async () => {
    const clock = { t: 0 };
    const guard = new LoopGuard({ monotonic: () => clock.t });
    const ran: string[] = [];
    guard.timeout(() => ran.push('b'), 20);
    guard.timeout(() => {
      ran.push('a');
      guard.immediate(() => ran.push('added'), 0);
    }, 10);
    const cancelled = guard.timeout(() => ran.push('cancelled'), 15);
    guard.cancel(cancelled);
    clock.t = 30;
    guard.poke();
    expect(ran).toEqual(['a', 'b']);
    guard.poke();
    expect(ran).toEqual(['a', 'b', 'added']);
    await sleep(40);
    expect(ran).toEqual(['a', 'b', 'added']);
  });

  it('hands a task that throws to onError and goes on with the others', () => {
    const clock = { t: 0 };
    const errors: unknown[] = [];
    const guard = new LoopGuard({ monotonic: () => clock.t, onError: (err) => errors.push(err) });
    const ran: string[] = [];
    guard.timeout(() => {
      throw new Error('boom');
    }, 1);
    guard.timeout(() => ran.push('next'), 2);
    clock.t = 10;
    guard.poke();
    expect(ran).toEqual(['next']);
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe('boom');
    expect(guard.size).toBe(0);
  });
});

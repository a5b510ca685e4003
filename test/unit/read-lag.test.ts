import { describe, expect, it } from 'vitest';
import { ReadLag } from '../../src/realtime/read-lag.js';

describe('ReadLag (clock and loop load injected)', () => {
  /** A ReadLag whose windows read `busy` (a share of the window) from the list, one per window ended. */
  function lagOf(busy: number[]) {
    let now = 0;
    const loads = [...busy];
    const lag = new ReadLag({
      monotonic: () => now,
      loopUtilization: () => loads.shift() ?? 0,
      windowMs: 250,
      maxMs: 2_000,
      timer: false,
    });
    return {
      at(ms: number) {
        now = ms;
        return lag.ms();
      },
    };
  }

  it('is 0 while windows have slack, and within a window before it ends', () => {
    const lag = lagOf([0.5, 0.9]);
    expect(lag.at(100)).toBe(0);
    expect(lag.at(250)).toBe(0);
    expect(lag.at(500)).toBe(0);
  });

  it('counts from the start of the last window with slack while saturated windows follow it, up to maxMs', () => {
    // Windows [0, 250) slack, [250, 500) and [500, 750) saturated: the loop may not have read since 0.
    const lag = lagOf([0.5, 0.97, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(lag.at(250)).toBe(0);
    expect(lag.at(500)).toBe(500);
    expect(lag.at(600)).toBe(600);
    expect(lag.at(750)).toBe(750);
    // A busy loop ends its windows late: one long saturated window counts whole.
    expect(lag.at(1_900)).toBe(1_900);
    expect(lag.at(2_500)).toBe(2_000);
  });

  it('goes back to 0 with the first window that had slack, and a new run counts from that window', () => {
    const lag = lagOf([1, 1, 0.3, 1]);
    expect(lag.at(250)).toBe(250);
    expect(lag.at(500)).toBe(500);
    expect(lag.at(750)).toBe(0);
    // [500, 750) had slack; [750, 1000) did not.
    expect(lag.at(1_000)).toBe(500);
  });
});

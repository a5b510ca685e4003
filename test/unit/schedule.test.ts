import { describe, expect, it } from 'vitest';
import {
  DrawSchedule,
  type DrawWindow,
  type ScheduleConfig,
  validateCronExpression,
} from '../../src/domain/schedule.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T = (iso: string): number => {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new Error(`bad test instant ${iso}`);
  return t;
};
const win = (draw: string, start: string, end: string): DrawWindow => ({
  drawTime: T(draw),
  startsAt: T(start),
  endsAt: T(end),
});
const schedule = (config: Partial<ScheduleConfig>): DrawSchedule =>
  new DrawSchedule({ timezone: 'UTC', times: [], preDrawHours: 1, postDrawHours: 1, ...config });

/** The draws from `from` on, by repeated nextDrawAt. */
function drawsFrom(s: DrawSchedule, from: number, count: number): string[] {
  const out: string[] = [];
  let at = from;
  for (let i = 0; i < count; i++) {
    const d = s.nextDrawAt(at);
    if (d === null) break;
    out.push(new Date(d).toISOString());
    at = d + 1;
  }
  return out;
}

describe('default schedule', () => {
  it('[SPEC §3] hourly default keeps the chat open: window is draw ± 30 min', () => {
    const s = schedule({});
    expect(s.windowAt(T('2024-05-01T12:10:00Z'))).toEqual(
      win('2024-05-01T12:00:00Z', '2024-05-01T11:30:00Z', '2024-05-01T12:30:00Z'),
    );
    expect(s.windowAt(T('2024-05-01T12:29:59.999Z'))?.drawTime).toBe(T('2024-05-01T12:00:00Z'));
    expect(s.windowAt(T('2024-05-01T12:30:00Z'))).toEqual(
      win('2024-05-01T13:00:00Z', '2024-05-01T12:30:00Z', '2024-05-01T13:30:00Z'),
    );
    expect(s.phaseAt(T('2024-05-01T12:10:00Z'))).toBe('post_draw');
    expect(s.phaseAt(T('2024-05-01T12:45:00Z'))).toBe('pre_draw');
    // Never closed, over a whole day at odd steps.
    for (let at = T('2024-05-01T00:00:00Z'); at < T('2024-05-02T00:00:00Z'); at += 7 * MIN + 13_001) {
      expect(s.phaseAt(at)).not.toBe('closed');
    }
  });

  it('[SPEC §3] hourly default: next draw is the coming full hour (inclusive)', () => {
    const s = schedule({});
    expect(s.nextDrawAt(T('2024-05-01T12:00:00Z'))).toBe(T('2024-05-01T12:00:00Z'));
    expect(s.nextDrawAt(T('2024-05-01T12:00:00.001Z'))).toBe(T('2024-05-01T13:00:00Z'));
    expect(s.nextWindow(T('2024-05-01T12:10:00Z'))).toEqual(
      win('2024-05-01T13:00:00Z', '2024-05-01T12:30:00Z', '2024-05-01T13:30:00Z'),
    );
  });

  it('[SPEC §3] hourly default is on the hour of DRAW_TIMEZONE (Asia/Kolkata, UTC+5:30)', () => {
    const s = schedule({ timezone: 'Asia/Kolkata' });
    expect(s.nextDrawAt(T('2024-05-01T12:00:00Z'))).toBe(T('2024-05-01T12:30:00Z'));
  });

  it('[SPEC §3] setting DRAW_TIMES replaces the hourly default', () => {
    const s = schedule({ times: [T('2030-01-01T12:00:00Z')] });
    expect(s.windowAt(T('2029-06-01T12:00:00Z'))).toBeNull();
    expect(s.nextDrawAt(T('2029-06-01T12:00:00Z'))).toBe(T('2030-01-01T12:00:00Z'));
  });
});

describe('weekly cron 0 20 * * 5 in UTC, pre = post = 1 h', () => {
  const s = schedule({ cron: '0 20 * * 5' });
  const friday = win('2024-01-05T20:00:00Z', '2024-01-05T19:00:00Z', '2024-01-05T21:00:00Z');
  const nextFriday = win('2024-01-12T20:00:00Z', '2024-01-12T19:00:00Z', '2024-01-12T21:00:00Z');

  it('[SPEC §3] pre_draw before the draw, post_draw after it, closed outside the window', () => {
    expect(s.phaseAt(T('2024-01-05T19:30:00Z'))).toBe('pre_draw');
    expect(s.windowAt(T('2024-01-05T19:30:00Z'))).toEqual(friday);
    expect(s.phaseAt(T('2024-01-05T20:30:00Z'))).toBe('post_draw');
    expect(s.phaseAt(T('2024-01-05T21:00:01Z'))).toBe('closed');
    expect(s.phaseAt(T('2024-01-05T18:59:00Z'))).toBe('closed');
    expect(s.windowAt(T('2024-01-05T18:59:00Z'))).toBeNull();
  });

  it('[SPEC §3] from a closed instant, nextWindow and nextDrawAt give the coming draw', () => {
    expect(s.nextWindow(T('2024-01-05T18:59:00Z'))).toEqual(friday);
    expect(s.nextDrawAt(T('2024-01-05T18:59:00Z'))).toBe(friday.drawTime);
    expect(s.nextWindow(T('2024-01-05T21:00:01Z'))).toEqual(nextFriday);
    expect(s.nextDrawAt(T('2024-01-05T21:00:01Z'))).toBe(nextFriday.drawTime);
    expect(s.nextWindow(T('2024-01-08T09:00:00Z'))).toEqual(nextFriday);
  });

  it('[SPEC §3] nextWindow from inside a window is the following one (startsAt > at)', () => {
    expect(s.nextWindow(T('2024-01-05T19:30:00Z'))).toEqual(nextFriday);
    expect(s.nextWindow(friday.startsAt)).toEqual(nextFriday);
    expect(s.nextWindow(friday.startsAt - 1)).toEqual(friday);
  });

  it('[SPEC §3] phaseAt boundaries: startsAt opens, drawTime starts post_draw, endsAt closes (half-open)', () => {
    expect(s.phaseAt(friday.startsAt - 1)).toBe('closed');
    expect(s.phaseAt(friday.startsAt)).toBe('pre_draw');
    expect(s.phaseAt(friday.drawTime - 1)).toBe('pre_draw');
    expect(s.phaseAt(friday.drawTime)).toBe('post_draw');
    expect(s.phaseAt(friday.endsAt - 1)).toBe('post_draw');
    expect(s.phaseAt(friday.endsAt)).toBe('closed');
    expect(s.windowAt(friday.endsAt)).toBeNull();
  });
});

describe('decimal and zero hours', () => {
  it('[SPEC §3] decimal hours: pre 0.5 h and post 0.25 h give [draw − 30 min, draw + 15 min)', () => {
    const s = schedule({ cron: '0 20 * * 5', preDrawHours: 0.5, postDrawHours: 0.25 });
    const w = win('2024-01-05T20:00:00Z', '2024-01-05T19:30:00Z', '2024-01-05T20:15:00Z');
    expect(s.windowAt(T('2024-01-05T20:00:00Z'))).toEqual(w);
    expect(s.phaseAt(T('2024-01-05T19:29:59.999Z'))).toBe('closed');
    expect(s.phaseAt(T('2024-01-05T19:30:00Z'))).toBe('pre_draw');
    expect(s.phaseAt(T('2024-01-05T20:14:59.999Z'))).toBe('post_draw');
    expect(s.phaseAt(T('2024-01-05T20:15:00Z'))).toBe('closed');
  });

  it('[SPEC §3] decimal hours on the hourly default: 0.25 h each side leaves the chat closed half the time', () => {
    const s = schedule({ preDrawHours: 0.25, postDrawHours: 0.25 });
    expect(s.windowAt(T('2024-05-01T12:10:00Z'))).toEqual(
      win('2024-05-01T12:00:00Z', '2024-05-01T11:45:00Z', '2024-05-01T12:15:00Z'),
    );
    expect(s.phaseAt(T('2024-05-01T12:20:00Z'))).toBe('closed');
    expect(s.nextWindow(T('2024-05-01T12:20:00Z'))?.startsAt).toBe(T('2024-05-01T12:45:00Z'));
  });

  it('[SPEC §3] zero pre-draw hours: the window opens at the draw', () => {
    const s = schedule({ cron: '0 20 * * 5', preDrawHours: 0 });
    expect(s.phaseAt(T('2024-01-05T19:59:59.999Z'))).toBe('closed');
    expect(s.phaseAt(T('2024-01-05T20:00:00Z'))).toBe('post_draw');
    expect(s.windowAt(T('2024-01-05T20:00:00Z'))?.endsAt).toBe(T('2024-01-05T21:00:00Z'));
  });
});

describe('explicit DRAW_TIMES', () => {
  it('[SPEC §3] DRAW_TIMES only: each instant is a draw, in order, whatever order they were given in', () => {
    const s = schedule({ times: [T('2030-06-01T18:00:00Z'), T('2030-05-01T18:00:00Z')] });
    expect(s.nextDrawAt(T('2020-01-01T00:00:00Z'))).toBe(T('2030-05-01T18:00:00Z'));
    expect(s.windowAt(T('2030-05-01T17:30:00Z'))).toEqual(
      win('2030-05-01T18:00:00Z', '2030-05-01T17:00:00Z', '2030-05-01T19:00:00Z'),
    );
    expect(s.phaseAt(T('2030-05-01T19:00:00Z'))).toBe('closed');
    expect(s.nextWindow(T('2030-05-01T19:00:00Z'))).toEqual(
      win('2030-06-01T18:00:00Z', '2030-06-01T17:00:00Z', '2030-06-01T19:00:00Z'),
    );
  });

  it('[SPEC §3] union of DRAW_SCHEDULE and DRAW_TIMES, duplicates counted once', () => {
    const s = schedule({
      cron: '0 20 * * 5',
      times: [T('2024-01-05T20:00:00Z'), T('2024-01-03T12:00:00Z'), T('2024-01-03T12:00:00Z')],
    });
    expect(drawsFrom(s, T('2024-01-01T00:00:00Z'), 4)).toEqual([
      '2024-01-03T12:00:00.000Z',
      '2024-01-05T20:00:00.000Z',
      '2024-01-12T20:00:00.000Z',
      '2024-01-19T20:00:00.000Z',
    ]);
    // A duplicate would have split the window at its own draw time.
    expect(s.windowAt(T('2024-01-05T20:30:00Z'))).toEqual(
      win('2024-01-05T20:00:00Z', '2024-01-05T19:00:00Z', '2024-01-05T21:00:00Z'),
    );
    expect(s.windowAt(T('2024-01-03T11:30:00Z'))?.drawTime).toBe(T('2024-01-03T12:00:00Z'));
  });

  it('[SPEC §3] no more draws: only past DRAW_TIMES → nextWindow and nextDrawAt are null, chat closed', () => {
    const last = T('2024-01-05T20:00:00Z');
    const s = schedule({ times: [T('2024-01-01T20:00:00Z'), last] });
    const later = T('2024-02-01T00:00:00Z');
    expect(s.nextWindow(later)).toBeNull();
    expect(s.nextDrawAt(later)).toBeNull();
    expect(s.windowAt(later)).toBeNull();
    expect(s.phaseAt(later)).toBe('closed');
    // Inside the last window: it is current, but there is nothing after it.
    expect(s.windowAt(last + 10 * MIN)?.drawTime).toBe(last);
    expect(s.nextWindow(last + 10 * MIN)).toBeNull();
    expect(s.nextDrawAt(last + 1)).toBeNull();
    expect(s.nextDrawAt(last)).toBe(last);
  });

  it('[SPEC §3] far future and far past instants do not break the lookups', () => {
    const s = schedule({ times: [T('2024-01-05T20:00:00Z')] });
    expect(s.nextDrawAt(-8.64e15)).toBe(T('2024-01-05T20:00:00Z'));
    expect(s.nextWindow(8.64e15)).toBeNull();
    const cron = schedule({ cron: '0 20 * * 5' });
    expect(cron.nextDrawAt(T('2500-01-01T00:00:00Z'))).toBe(T('2500-01-01T20:00:00Z'));
    // croner searches forward no further than the year 3000: beyond that, no more draws.
    expect(cron.nextWindow(T('3000-01-01T00:00:00Z'))).toBeNull();
    expect(cron.windowAt(8.64e15)).toBeNull();
    expect(cron.phaseAt(-8.64e15)).toBe('closed');
    expect(cron.nextDrawAt(-8.64e15)).toBeTypeOf('number');
  });
});

describe('overlapping windows: the midpoint rule', () => {
  it('[SPEC §3] two draws 1 h apart with pre = post = 1 h: the boundary is the midpoint, which belongs to the later window', () => {
    const s = schedule({ times: [T('2024-01-05T12:00:00Z'), T('2024-01-05T13:00:00Z')] });
    expect(s.windowAt(T('2024-01-05T11:00:00Z'))).toEqual(
      win('2024-01-05T12:00:00Z', '2024-01-05T11:00:00Z', '2024-01-05T12:30:00Z'),
    );
    expect(s.windowAt(T('2024-01-05T12:29:59.999Z'))?.drawTime).toBe(T('2024-01-05T12:00:00Z'));
    expect(s.windowAt(T('2024-01-05T12:30:00Z'))).toEqual(
      win('2024-01-05T13:00:00Z', '2024-01-05T12:30:00Z', '2024-01-05T14:00:00Z'),
    );
    expect(s.phaseAt(T('2024-01-05T12:30:00Z'))).toBe('pre_draw');
    expect(s.nextWindow(T('2024-01-05T11:00:00Z'))?.startsAt).toBe(T('2024-01-05T12:30:00Z'));
  });

  it('[SPEC §3] a window between two close neighbours is cut on both sides', () => {
    const s = schedule({
      times: [T('2024-01-05T12:00:00Z'), T('2024-01-05T12:10:00Z'), T('2024-01-05T12:20:00Z')],
    });
    expect(s.windowAt(T('2024-01-05T12:10:00Z'))).toEqual(
      win('2024-01-05T12:10:00Z', '2024-01-05T12:05:00Z', '2024-01-05T12:15:00Z'),
    );
    expect(s.windowAt(T('2024-01-05T11:00:00Z'))?.endsAt).toBe(T('2024-01-05T12:05:00Z'));
    expect(s.windowAt(T('2024-01-05T13:00:00Z'))).toEqual(
      win('2024-01-05T12:20:00Z', '2024-01-05T12:15:00Z', '2024-01-05T13:20:00Z'),
    );
  });

  it('[SPEC §3] asymmetric pre/post: the midpoint is clamped into the overlap, no gap and no window past its own bounds', () => {
    const times = [T('2024-01-05T12:00:00Z'), T('2024-01-05T13:00:00Z')];
    // pre 0, post 2: natural [12:00, 14:00) and [13:00, 15:00); midpoint 12:30 is before the overlap.
    const a = schedule({ times, preDrawHours: 0, postDrawHours: 2 });
    expect(a.windowAt(T('2024-01-05T12:30:00Z'))).toEqual(
      win('2024-01-05T12:00:00Z', '2024-01-05T12:00:00Z', '2024-01-05T13:00:00Z'),
    );
    expect(a.windowAt(T('2024-01-05T13:00:00Z'))).toEqual(
      win('2024-01-05T13:00:00Z', '2024-01-05T13:00:00Z', '2024-01-05T15:00:00Z'),
    );
    // pre 2, post 0: natural [10:00, 12:00) and [11:00, 13:00); midpoint 12:30 is after the overlap.
    const b = schedule({ times, preDrawHours: 2, postDrawHours: 0 });
    expect(b.windowAt(T('2024-01-05T11:30:00Z'))).toEqual(
      win('2024-01-05T12:00:00Z', '2024-01-05T10:00:00Z', '2024-01-05T12:00:00Z'),
    );
    expect(b.windowAt(T('2024-01-05T12:00:00Z'))).toEqual(
      win('2024-01-05T13:00:00Z', '2024-01-05T12:00:00Z', '2024-01-05T13:00:00Z'),
    );
    // pre 3, post 0.5, draws 2 h apart: overlap [11:00, 12:30], midpoint 13:00 clamps to 12:30.
    const c = schedule({
      times: [T('2024-01-05T12:00:00Z'), T('2024-01-05T14:00:00Z')],
      preDrawHours: 3,
      postDrawHours: 0.5,
    });
    expect(c.windowAt(T('2024-01-05T12:29:59.999Z'))?.endsAt).toBe(T('2024-01-05T12:30:00Z'));
    expect(c.windowAt(T('2024-01-05T12:30:00Z'))).toEqual(
      win('2024-01-05T14:00:00Z', '2024-01-05T12:30:00Z', '2024-01-05T14:30:00Z'),
    );
  });

  it('[SPEC §3] at most one window at any instant: windowAt matches a brute-force model on random schedules', () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const base = T('2024-01-01T00:00:00Z');
    for (let round = 0; round < 40; round++) {
      const times = Array.from(
        { length: 1 + Math.floor(rand() * 12) },
        () => base + Math.floor(rand() * 20) * 15 * MIN,
      );
      const pre = [0, 0.25, 0.5, 1, 2.5][Math.floor(rand() * 5)]!;
      const post = [0, 0.25, 0.5, 1, 2.5][Math.floor(rand() * 5)]!;
      const s = schedule({ times, preDrawHours: pre, postDrawHours: post });
      const draws = [...new Set(times)].sort((x, y) => x - y);
      // Model: natural windows, every overlapping pair split at the midpoint clamped into the overlap.
      const windows = draws.map((d) => ({ drawTime: d, startsAt: d - pre * HOUR, endsAt: d + post * HOUR }));
      for (let i = 1; i < windows.length; i++) {
        const prev = windows[i - 1]!;
        const cur = windows[i]!;
        const naturalEnd = prev.drawTime + post * HOUR;
        if (naturalEnd > cur.startsAt) {
          const mid = (prev.drawTime + cur.drawTime) / 2;
          const b = Math.min(Math.max(mid, cur.startsAt), naturalEnd);
          prev.endsAt = b;
          cur.startsAt = b;
        }
      }
      for (let at = base - 3 * HOUR; at < base + 9 * HOUR; at += 5 * MIN) {
        const containing = windows.filter((w) => w.startsAt <= at && at < w.endsAt);
        expect(containing.length).toBeLessThanOrEqual(1);
        expect(s.windowAt(at)).toEqual(containing[0] ?? null);
        const next = windows.find((w) => w.startsAt > at) ?? null;
        expect(s.nextWindow(at)).toEqual(next);
      }
      for (const w of windows) {
        expect(w.startsAt).toBeLessThanOrEqual(w.drawTime);
        expect(w.drawTime).toBeLessThanOrEqual(w.endsAt);
      }
    }
  });
});

describe('DST in Europe/London', () => {
  const london = (cron: string, hours = 1) =>
    schedule({ cron, timezone: 'Europe/London', preDrawHours: hours, postDrawHours: hours });

  it('[SPEC §3] 0 20 * * 5 is 20:00 UTC in winter and 19:00 UTC in summer', () => {
    const s = london('0 20 * * 5');
    expect(s.nextDrawAt(T('2024-01-01T00:00:00Z'))).toBe(T('2024-01-05T20:00:00Z'));
    expect(s.nextDrawAt(T('2024-07-01T00:00:00Z'))).toBe(T('2024-07-05T19:00:00Z'));
    expect(s.windowAt(T('2024-07-05T18:30:00Z'))).toEqual(
      win('2024-07-05T19:00:00Z', '2024-07-05T18:00:00Z', '2024-07-05T20:00:00Z'),
    );
    expect(s.phaseAt(T('2024-07-05T20:00:00Z'))).toBe('closed');
    // Across the March and October changes.
    expect(drawsFrom(s, T('2024-03-28T00:00:00Z'), 2)).toEqual([
      '2024-03-29T20:00:00.000Z',
      '2024-04-05T19:00:00.000Z',
    ]);
    expect(drawsFrom(s, T('2024-10-24T00:00:00Z'), 2)).toEqual([
      '2024-10-25T19:00:00.000Z',
      '2024-11-01T20:00:00.000Z',
    ]);
  });

  it('[SPEC §3] a window straddling the March change lasts pre + post real hours', () => {
    // 02:00 BST on 31 March 2024 is 01:00 UTC, the instant the clocks jump from 01:00 GMT.
    const s = london('0 2 * * 0', 2);
    const w = win('2024-03-31T01:00:00Z', '2024-03-30T23:00:00Z', '2024-03-31T03:00:00Z');
    expect(s.windowAt(T('2024-03-31T00:30:00Z'))).toEqual(w);
    expect(s.phaseAt(T('2024-03-31T00:59:59.999Z'))).toBe('pre_draw');
    expect(s.phaseAt(T('2024-03-31T01:00:00Z'))).toBe('post_draw');
  });

  it('[SPEC §3] a window straddling the October change lasts pre + post real hours', () => {
    // 00:30 BST on 27 October 2024 is 23:30 UTC the day before; the clocks go back at 01:00 UTC.
    const s = london('30 0 * * 0', 2);
    expect(s.windowAt(T('2024-10-27T01:00:00Z'))).toEqual(
      win('2024-10-26T23:30:00Z', '2024-10-26T21:30:00Z', '2024-10-27T01:30:00Z'),
    );
  });

  it('[SPEC §3] DST: a nonexistent local time (30 1 * * * on the spring-forward day) gives one draw, at the end of the gap', () => {
    const s = london('30 1 * * *');
    expect(drawsFrom(s, T('2024-03-30T00:00:00Z'), 3)).toEqual([
      '2024-03-30T01:30:00.000Z', // 01:30 GMT
      '2024-03-31T01:00:00.000Z', // 01:30 GMT does not exist; runs at 02:00 BST
      '2024-04-01T00:30:00.000Z', // 01:30 BST
    ]);
    expect(s.windowAt(T('2024-03-31T01:30:00Z'))?.drawTime).toBe(T('2024-03-31T01:00:00Z'));
  });

  it('[SPEC §3] DST: an ambiguous local time (30 1 * * * on the fall-back day) gives exactly one draw, the first', () => {
    const s = london('30 1 * * *');
    expect(drawsFrom(s, T('2024-10-26T12:00:00Z'), 2)).toEqual([
      '2024-10-27T00:30:00.000Z', // 01:30 BST; 01:30 GMT (01:30 UTC) is not a second draw
      '2024-10-28T01:30:00.000Z',
    ]);
    expect(s.phaseAt(T('2024-10-27T01:30:00Z'))).toBe('closed');
    expect(s.windowAt(T('2024-10-27T01:29:59.999Z'))?.drawTime).toBe(T('2024-10-27T00:30:00Z'));
    // A list is a fixed time too: one draw at 01:30, one at 13:30.
    expect(drawsFrom(london('30 1,13 * * *'), T('2024-10-26T23:00:00Z'), 2)).toEqual([
      '2024-10-27T00:30:00.000Z',
      '2024-10-27T13:30:00.000Z',
    ]);
  });

  it('[SPEC §3] DST: the hourly default stays hourly in real time through both changes and the chat stays open', () => {
    const s = schedule({ timezone: 'Europe/London' });
    // Spring: local 01:00 does not exist, so 00:00 GMT is followed by 02:00 BST, one real hour later.
    expect(drawsFrom(s, T('2024-03-30T23:30:00Z'), 3)).toEqual([
      '2024-03-31T00:00:00.000Z',
      '2024-03-31T01:00:00.000Z',
      '2024-03-31T02:00:00.000Z',
    ]);
    // Autumn: local 01:00 happens twice, an hour apart; each real hour keeps its draw, none twice.
    expect(drawsFrom(s, T('2024-10-26T23:30:00Z'), 4)).toEqual([
      '2024-10-27T00:00:00.000Z',
      '2024-10-27T01:00:00.000Z',
      '2024-10-27T02:00:00.000Z',
      '2024-10-27T03:00:00.000Z',
    ]);
    for (const [from, to] of [
      ['2024-03-30T22:00:00Z', '2024-03-31T04:00:00Z'],
      ['2024-10-26T22:00:00Z', '2024-10-27T04:00:00Z'],
    ] as const) {
      for (let at = T(from); at < T(to); at += 10 * MIN) {
        const w = s.windowAt(at);
        expect(w?.endsAt).toBeDefined();
        expect(w!.endsAt - w!.startsAt).toBe(HOUR);
      }
    }
  });
});

describe('dense schedules', () => {
  it('[SPEC §3] * * * * * with pre = post = 1 h: 1-minute windows, 10,000 windowAt calls stay cheap', () => {
    const s = schedule({ cron: '* * * * *', timezone: 'Europe/London' });
    expect(s.windowAt(T('2024-05-01T12:00:29.999Z'))).toEqual(
      win('2024-05-01T12:00:00Z', '2024-05-01T11:59:30Z', '2024-05-01T12:00:30Z'),
    );
    expect(s.windowAt(T('2024-05-01T12:00:30Z'))?.drawTime).toBe(T('2024-05-01T12:01:00Z'));
    expect(s.nextWindow(T('2024-05-01T12:00:10Z'))?.drawTime).toBe(T('2024-05-01T12:01:00Z'));
    const base = T('2024-01-01T00:00:00Z');
    for (let i = 0; i < 10_000; i++) {
      // Jumps around the year (no memo hits), including both DST changes.
      const at = base + ((i * 7_919_993) % (366 * 24 * HOUR));
      const w = s.windowAt(at);
      expect(w).not.toBeNull();
      expect(w!.drawTime).toBe(Math.round(at / MIN) * MIN);
      expect(w!.endsAt - w!.startsAt).toBe(MIN);
    }
  });

  it('[SPEC §3] repeated calls inside the last window reuse it', () => {
    const s = schedule({ cron: '* * * * *' });
    const first = s.windowAt(T('2024-05-01T12:00:00Z'));
    for (let ms = 0; ms < 30_000; ms += 100) {
      expect(s.windowAt(T('2024-05-01T12:00:00Z') + ms)).toBe(first);
    }
    // And leaving it gives the right next window, then coming back works too.
    expect(s.windowAt(T('2024-05-01T12:00:30Z'))?.drawTime).toBe(T('2024-05-01T12:01:00Z'));
    expect(s.windowAt(T('2024-05-01T12:00:00Z'))).toEqual(first);
    // A memoised closed gap does not hide windows on either side.
    const weekly = schedule({ cron: '0 20 * * 5' });
    expect(weekly.windowAt(T('2024-01-08T00:00:00Z'))).toBeNull();
    expect(weekly.windowAt(T('2024-01-08T00:00:01Z'))).toBeNull();
    expect(weekly.windowAt(T('2024-01-12T19:00:00Z'))?.drawTime).toBe(T('2024-01-12T20:00:00Z'));
    expect(weekly.windowAt(T('2024-01-05T20:59:59.999Z'))?.drawTime).toBe(T('2024-01-05T20:00:00Z'));
  });
});

describe('validateCronExpression', () => {
  it('[SPEC §3] accepts 5-field cron expressions', () => {
    for (const expr of [
      '0 20 * * 5',
      '*/15 * * * *',
      '0 20 * * FRI',
      '0 9-17 * * 1-5',
      '0 20 L * *',
      ' 0  20 * * 5 ',
    ]) {
      expect(validateCronExpression(expr, 'Europe/London')).toBeNull();
    }
  });

  it('[SPEC §3] rejects 6- and 7-field (seconds/years), nicknames and nonsense, with a one-line reason', () => {
    const fields = 'must have 5 fields (minute hour day month weekday)';
    expect(validateCronExpression('0 0 20 * * 5', 'UTC')).toBe(fields);
    expect(validateCronExpression('0 0 20 * * 5 2030', 'UTC')).toBe(fields);
    expect(validateCronExpression('bad', 'UTC')).toBe(fields);
    expect(validateCronExpression('', 'UTC')).toBe(fields);
    expect(validateCronExpression('@hourly', 'UTC')).toBe(fields);
    expect(validateCronExpression('0 25 * * *', 'UTC')).toMatch(/hour/);
    expect(validateCronExpression('x y z w v', 'UTC')).not.toBeNull();
    expect(validateCronExpression('0 0 31 2 *', 'UTC')).toBe('never matches a date');
    for (const expr of ['0 25 * * *', '61 * * * *', '0 0 * 13 *', 'a b c d e']) {
      expect(validateCronExpression(expr, 'UTC')).not.toMatch(/\n/);
    }
  });

  it('[SPEC §3] DrawSchedule refuses an invalid cron expression', () => {
    expect(() => schedule({ cron: '0 0 20 * * 5' })).toThrow(/5 fields/);
    expect(() => schedule({ preDrawHours: -1 })).toThrow(RangeError);
  });
});

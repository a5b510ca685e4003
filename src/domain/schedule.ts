/**
 * Draw schedule and chat windows (SPEC §3). Pure: every function takes the instant it is asked about.
 *
 * Draws are the union of a 5-field cron expression, evaluated by croner in an IANA time zone, and explicit
 * instants. The window of draw d is [d − pre, d + post), with pre/post as elapsed hours (a window that
 * straddles a DST change is still pre + post real hours long). Where two windows overlap, the boundary is the
 * midpoint of the two draws, clamped into the overlap so each window stays within its own natural bounds.
 *
 * DST decisions (croner's Vixie-cron rules, with `fixedTimeRule: 'no-wildcard'`):
 * - Fixed-time patterns (no `*` or step in minute and hour, e.g. `30 1 * * *` or `0 20,21 * * 5`):
 *   - a local time that does not exist (spring forward) runs once, at the first valid instant after the gap
 *     on the same day (`30 1 * * *` in Europe/London on the last Sunday of March → 02:00 BST = 01:00 UTC).
 *     A draw is a promise to the audience, so moving it to the end of the gap beats silently dropping it.
 *   - a local time that occurs twice (fall back) runs once, at its first occurrence (01:30 BST = 00:30 UTC).
 *     'no-wildcard' makes lists/ranges fixed-time too; croner's default would hold the 01:30 draw of
 *     `30 1,13 * * *` twice.
 * - Interval patterns (`*` or a step in minute or hour, e.g. the hourly default `0 * * * *`): the repeated
 *   hour is a real hour, so it gets its own draws (01:00 BST and 01:00 GMT are an hour apart, as "hourly"
 *   promises), and times in the spring gap are skipped (no such hour passed). Either way no two draws share an
 *   instant, and the midpoint rule keeps windows gap-free where they overlap.
 */
import { Cron } from 'croner';

export type Phase = 'pre_draw' | 'post_draw' | 'closed';

/** Milliseconds since the epoch; the effective window after the midpoint rule, half-open [startsAt, endsAt). */
export interface DrawWindow {
  drawTime: number;
  startsAt: number;
  endsAt: number;
}

export interface ScheduleConfig {
  cron?: string;
  timezone: string;
  times: readonly number[];
  preDrawHours: number;
  postDrawHours: number;
}

export const DEFAULT_CRON = '0 * * * *';

const HOUR_MS = 3_600_000;
const FIELDS_REASON = 'must have 5 fields (minute hour day month weekday)';
// A fixed instant to probe whether a pattern ever fires (no year field, so any pattern that fires is periodic).
const PROBE_FROM = new Date(Date.UTC(2000, 0, 1));

function makeCron(expr: string, timezone: string): Cron {
  return new Cron(expr.trim(), { timezone, paused: true, mode: '5-part', fixedTimeRule: 'no-wildcard' });
}

/** `null` when `expr` is a usable 5-field cron expression in `timezone`, else a short one-line reason. */
export function validateCronExpression(expr: string, timezone: string): string | null {
  // croner also takes nicknames (`@hourly`); the setting is documented as 5 fields, so hold it to that.
  if (expr.trim().split(/\s+/).length !== 5) return FIELDS_REASON;
  try {
    if (makeCron(expr, timezone).nextRun(PROBE_FROM) === null) return 'never matches a date';
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    return text
      .replace(/^CronPattern:\s*/, '')
      .replace(/\s+/g, ' ')
      .trim();
  }
  return null;
}

/** Sorted, deduplicated, finite. */
function normaliseTimes(times: readonly number[]): number[] {
  return [...new Set(times.filter((t) => Number.isFinite(t)))].sort((a, b) => a - b);
}

/** Index of the first element > t. */
function upperBound(sorted: readonly number[], t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first element >= t. */
function lowerBound(sorted: readonly number[], t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function minOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

function maxOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

// croner handles years 1..9999 only (and searches forward no further than the year 3000).
const CRON_MIN_MS = Date.parse('0002-01-01T00:00:00Z');
const CRON_MAX_MS = Date.parse('9999-01-01T00:00:00Z');

export class DrawSchedule {
  readonly #cron: Cron | null;
  readonly #times: readonly number[];
  readonly #preMs: number;
  readonly #postMs: number;
  /** Last answer of windowAt: the window, or the closed gap (window null) that `at` fell in. */
  #memo: { from: number; to: number; window: DrawWindow | null } | null = null;

  constructor(config: ScheduleConfig) {
    for (const [name, hours] of [
      ['preDrawHours', config.preDrawHours],
      ['postDrawHours', config.postDrawHours],
    ] as const) {
      if (!Number.isFinite(hours) || hours < 0) throw new RangeError(`${name} must be a finite number >= 0`);
    }
    this.#preMs = Math.round(config.preDrawHours * HOUR_MS);
    this.#postMs = Math.round(config.postDrawHours * HOUR_MS);
    this.#times = normaliseTimes(config.times);
    const explicit = config.cron?.trim() || undefined;
    const pattern = explicit ?? (this.#times.length === 0 ? DEFAULT_CRON : undefined);
    if (pattern === undefined) {
      this.#cron = null;
    } else {
      const reason = validateCronExpression(pattern, config.timezone);
      if (reason !== null) throw new Error(`Invalid cron expression ${JSON.stringify(pattern)}: ${reason}`);
      this.#cron = makeCron(pattern, config.timezone);
    }
  }

  /** The window containing `at` (startsAt <= at < endsAt), or null when the chat is closed. */
  windowAt(at: number): DrawWindow | null {
    assertInstant(at);
    const memo = this.#memo;
    if (memo !== null && memo.from <= at && at < memo.to) return memo.window;

    // Effective windows are ordered and each contains its own draw, so only the last draw <= at and the
    // first draw > at can own `at`; their other neighbours only move the outer edges. O(1) cron lookups,
    // however dense the schedule.
    const p = this.#atOrBefore(at);
    const n = this.#after(at);
    const [endP, startN] =
      p !== null && n !== null
        ? this.#edges(p, n)
        : [
            p === null ? Number.NEGATIVE_INFINITY : p + this.#postMs,
            n === null ? Number.POSITIVE_INFINITY : n - this.#preMs,
          ];
    if (p !== null && at < endP) return this.#remember(this.#windowOf(p, this.#before(p), n));
    if (n !== null && startN <= at) return this.#remember(this.#windowOf(n, p, this.#after(n)));
    // Closed: remember the gap between the two windows.
    this.#memo = { from: endP, to: startN, window: null };
    return null;
  }

  /** The first window with startsAt > at, or null when the schedule has no more draws. */
  nextWindow(at: number): DrawWindow | null {
    assertInstant(at);
    const n = this.#after(at);
    if (n === null) return null;
    const p = this.#atOrBefore(at);
    const start = p === null ? n - this.#preMs : this.#edges(p, n)[1];
    const nn = this.#after(n);
    // Windows of draws <= at start at or before at; if n's window has begun, the next one is nn's.
    if (start > at) return this.#windowOf(n, p, nn);
    return nn === null ? null : this.#windowOf(nn, n, this.#after(nn));
  }

  /** The earliest draw time >= at, or null. */
  nextDrawAt(at: number): number | null {
    assertInstant(at);
    return this.#after(Math.ceil(at) - 1);
  }

  phaseAt(at: number): Phase {
    const w = this.windowAt(at);
    if (w === null) return 'closed';
    return at < w.drawTime ? 'pre_draw' : 'post_draw';
  }

  #remember(window: DrawWindow): DrawWindow {
    this.#memo = { from: window.startsAt, to: window.endsAt, window };
    return window;
  }

  #windowOf(draw: number, prev: number | null, next: number | null): DrawWindow {
    return Object.freeze({
      drawTime: draw,
      startsAt: prev === null ? draw - this.#preMs : this.#edges(prev, draw)[1],
      endsAt: next === null ? draw + this.#postMs : this.#edges(draw, next)[0],
    });
  }

  /**
   * [end of `prev`'s window, start of `next`'s]: their natural edges, or where they overlap, the midpoint of
   * the draws clamped into the overlap (with asymmetric pre/post the raw midpoint may lie outside it).
   */
  #edges(prev: number, next: number): readonly [number, number] {
    const naturalEnd = prev + this.#postMs;
    const naturalStart = next - this.#preMs;
    if (naturalEnd <= naturalStart) return [naturalEnd, naturalStart];
    const mid = Math.floor((prev + next) / 2);
    const b = Math.min(Math.max(mid, naturalStart), naturalEnd);
    return [b, b];
  }

  /** Smallest draw > t. */
  #after(t: number): number | null {
    let fromCron: number | null = null;
    if (this.#cron !== null && t < CRON_MAX_MS) {
      fromCron = this.#cron.nextRun(new Date(Math.max(t, CRON_MIN_MS)))?.getTime() ?? null;
    }
    const i = upperBound(this.#times, t);
    return minOf(fromCron, this.#times[i] ?? null);
  }

  /** Largest draw < t. */
  #before(t: number): number | null {
    let fromCron: number | null = null;
    if (this.#cron !== null && t > CRON_MIN_MS) {
      fromCron = this.#cron.previousRuns(1, new Date(Math.min(t, CRON_MAX_MS)))[0]?.getTime() ?? null;
    }
    const i = lowerBound(this.#times, t);
    return maxOf(fromCron, i > 0 ? this.#times[i - 1]! : null);
  }

  /** Largest draw <= t. */
  #atOrBefore(t: number): number | null {
    return this.#before(Math.floor(t) + 1);
  }
}

function assertInstant(at: number): void {
  if (!Number.isFinite(at)) throw new RangeError(`not an instant: ${at}`);
}

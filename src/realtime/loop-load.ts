/**
 * The event loop's load, read in windows: one reader per process, on a timer, for everything that acts on it
 * (the read lag of the token buckets, `ReadLag`; the spacing of busy rooms' ticks, the hub).
 *
 * A window ends at the first read after `windowMs`, or at the timer that the first read starts (unref'd, every
 * `windowMs`); its load is the share of its time the loop was busy (`performance.eventLoopUtilization()`). A
 * busy loop runs the timer late, and the longer window it then ends was saturated all the same. Without the
 * timer the first read after a quiet minute would end one window of a minute, whose few seconds of saturation
 * just before, or whose minute of slack after a storm, would count as one window: the hub's tick spacing, read
 * only when a tick is scheduled, stayed where the last busy window had left it on a node gone quiet, and so did
 * its gauge (`drawchat_tick_spacing_factor`). Readers take the windows ended since their last read
 * (`since`), each on its own: a reader that was not asked for a while still sees every window of the last
 * `history`.
 */

/** How often the event loop's load is read (ms): a window. */
export const LOAD_WINDOW_MS = 250;
/** At or above this share of busy time over a window the loop had no slack. */
export const SATURATED = 0.95;

/** One window of the loop's load: its sequence number (from 1), start and end (monotonic ms), busy share (0–1). */
export interface LoadWindow {
  readonly seq: number;
  readonly start: number;
  readonly end: number;
  readonly busy: number;
  /**
   * The loop had no slack in it: busy `saturated` or more of its time, or ended a whole window late (see
   * `lateIsSaturated`). A window on the timer ends late only when the loop could not run its timer: a turn that
   * held it (a busy spell of seconds that started late in a window with slack reads, say, 4,000 of 4,200 ms
   * busy, under the threshold) or a process that got no CPU. Either way nothing was read meanwhile.
   */
  readonly saturated: boolean;
}

export interface LoopLoadOptions {
  /** Monotonic clock in ms (default `performance.now`). */
  monotonic?: () => number;
  /** The share of the time since its last call the event loop was busy, 0 to 1 (default: `eventLoopUtilization`). */
  loopUtilization?: () => number;
  /** Length of a window (ms, default `LOAD_WINDOW_MS`). */
  windowMs?: number;
  /** Busy share from which a window counts as saturated (default `SATURATED`). */
  saturated?: number;
  /**
   * A window that ends a whole window late is saturated whatever its share (default: with the timer, whose
   * lateness shows a loop that could not run it; without, windows end when read, and a late read shows nothing).
   */
  lateIsSaturated?: boolean;
  /** Windows kept for readers that come late (default 64: 16 s of 250 ms windows). */
  history?: number;
  /**
   * End windows on a timer too (default true). Tests that drive the clock by hand turn it off: windows then start
   * at construction and end only when read.
   */
  timer?: boolean;
}

/** One reader's place in a `LoopLoad` (`LoopLoad.reader`). */
export interface LoadReader {
  /**
   * The windows ended since this reader's last read, oldest first, and `fresh`: true on the first read that finds
   * windows, and when windows ended before these are no longer kept (a run the reader counts starts again).
   */
  read(): { windows: readonly LoadWindow[]; fresh: boolean };
}

const NONE: readonly LoadWindow[] = Object.freeze([]);

export class LoopLoad {
  readonly monotonic: () => number;
  readonly #utilization: () => number;
  readonly #windowMs: number;
  readonly #saturated: number;
  readonly #lateIsSaturated: boolean;
  readonly #history: number;
  /** The last `#history` windows, oldest first. */
  #windows: LoadWindow[] = [];
  #seq = 0;
  /** Start of the window being measured. */
  #windowStart: number;
  #timer: NodeJS.Timeout | undefined | false;

  constructor(options: LoopLoadOptions = {}) {
    this.monotonic = options.monotonic ?? (() => performance.now());
    this.#utilization = options.loopUtilization ?? eventLoopUtilization();
    this.#windowMs = options.windowMs ?? LOAD_WINDOW_MS;
    this.#saturated = options.saturated ?? SATURATED;
    this.#history = Math.max(1, options.history ?? 64);
    this.#windowStart = this.monotonic();
    this.#timer = options.timer === false ? false : undefined;
    this.#lateIsSaturated = options.lateIsSaturated ?? options.timer !== false;
  }

  /**
   * The windows ended after the one numbered `after` (0: all kept), oldest first; ends the current window first
   * if it is due. Costs a clock read and a comparison when nothing has ended.
   */
  since(after: number): readonly LoadWindow[] {
    this.#watch();
    this.poll();
    if (after >= this.#seq) return NONE;
    const first = this.#seq - this.#windows.length + 1;
    return this.#windows.slice(Math.max(0, after + 1 - first));
  }

  /** A reader of its own for each thing that acts on the load (the hub, `ReadLag`). */
  reader(): LoadReader {
    let seen = 0;
    return {
      read: () => {
        const windows = this.since(seen);
        if (windows.length === 0) return { windows, fresh: false };
        const fresh = seen === 0 || windows[0]!.seq !== seen + 1;
        seen = windows.at(-1)!.seq;
        return { windows, fresh };
      },
    };
  }

  #watch(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.poll(), this.#windowMs);
    this.#timer.unref();
    // Windows start now: the time before the first read was not watched.
    this.#windowStart = this.monotonic();
    this.#utilization();
  }

  /** Ends the current window if it is due: what the timer does (tests without it call this instead). */
  poll(): void {
    const now = this.monotonic();
    if (now - this.#windowStart < this.#windowMs) return;
    const busy = this.#utilization();
    const start = this.#windowStart;
    const saturated = busy >= this.#saturated || (this.#lateIsSaturated && now - start >= 2 * this.#windowMs);
    const window = { seq: ++this.#seq, start, end: now, busy, saturated };
    this.#windows.push(window);
    if (this.#windows.length > this.#history) this.#windows.shift();
    this.#windowStart = now;
  }
}

/** The share of the time since its last call the event loop was busy (`performance.eventLoopUtilization`). */
export function eventLoopUtilization(): () => number {
  // Test doubles of `performance` (fake timers) may not have it: a loop with slack, then.
  if (typeof performance.eventLoopUtilization !== 'function') return () => 0;
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last)?.utilization ?? 0;
    last = now;
    return busy;
  };
}

/** The process's own: one event loop, one reader (its timer starts with the first read). */
export const processLoopLoad = new LoopLoad();

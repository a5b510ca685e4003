/**
 * How late this process may be reading its sockets: how long a frame read now may have waited in the kernel,
 * unread, because the event loop had no time for it.
 *
 * An event loop that was idle for a moment had read everything its sockets held (libuv's poll reports a socket
 * with unread bytes as ready, so the loop only waits when none is). One that has been busy without a pause, a
 * node short of CPU in a heart storm say, may hold seconds of a client's frames in that client's socket and read
 * them in one go: a viewer tapping 11 hearts a second then seems to send hundreds at once, and the per-socket and
 * per-user token buckets, which judge a client by when its frames are read, refused those hearts and closed the
 * socket as abusive (1008) after 60 refusals, a node's whole audience within seconds. The buckets take this lag as
 * extra capacity instead (`TokenBucket`'s `slackMs`): a client gets the refill of the time its frames may have
 * waited, never more than its rate over that time.
 *
 * The loop's load is read in windows of `windowMs` (from `performance.eventLoopUtilization()`): a window busy for
 * at least `saturated` of its time had no pause worth the name. The lag is the time since the start of the window
 * before the first of a run of such windows (the last one with a pause), up to `maxMs`; 0 once a window had slack.
 * A window ends at the first call after `windowMs`, or at the timer that the first call starts (unref'd, every
 * `windowMs`): without it the first frame after a quiet minute would end a window of a minute, whose few seconds
 * of saturation just before would not show. A busy loop runs that timer late, and the longer window it then ends
 * was saturated all the same. A call costs a clock read and a comparison.
 */
/** How often the event loop's load is read (ms): a window. Shared with the hub's tick spacing. */
export const LOAD_WINDOW_MS = 250;
/** At or above this share of busy time over a window the loop had no slack. Shared with the hub's tick spacing. */
export const SATURATED = 0.95;

export interface ReadLagOptions {
  /** Monotonic clock in ms (default `performance.now`). */
  monotonic?: () => number;
  /** The share of the time since its last call the event loop was busy, 0 to 1 (default: `eventLoopUtilization`). */
  loopUtilization?: () => number;
  /** Length of a window (ms, default `LOAD_WINDOW_MS`). */
  windowMs?: number;
  /** Busy share from which a window counts as saturated (default `SATURATED`). */
  saturated?: number;
  /** The longest lag reported (ms, default 30,000). */
  maxMs?: number;
  /** End windows on a timer too (default true; tests that drive the clock by hand turn it off). */
  timer?: boolean;
}

export class ReadLag {
  readonly #monotonic: () => number;
  readonly #utilization: () => number;
  readonly #windowMs: number;
  readonly #saturated: number;
  readonly #maxMs: number;
  /** Start of the window being measured. */
  #windowStart: number;
  /** Start of the last window that had slack, while the windows after it were saturated; undefined otherwise. */
  #since: number | undefined;
  #lastSlackStart: number;
  #timer: NodeJS.Timeout | undefined | false;

  constructor(options: ReadLagOptions = {}) {
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#utilization = options.loopUtilization ?? eventLoopUtilization();
    this.#windowMs = options.windowMs ?? LOAD_WINDOW_MS;
    this.#saturated = options.saturated ?? SATURATED;
    this.#maxMs = options.maxMs ?? 30_000;
    this.#windowStart = this.#monotonic();
    this.#lastSlackStart = this.#windowStart;
    this.#timer = options.timer === false ? false : undefined;
  }

  /** The lag in ms: 0 while the loop has slack. */
  ms(): number {
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.ms(), this.#windowMs);
      this.#timer.unref();
      // Windows start now: the time before the first call was not watched.
      this.#windowStart = this.#monotonic();
      this.#lastSlackStart = this.#windowStart;
      this.#utilization();
    }
    const now = this.#monotonic();
    if (now - this.#windowStart >= this.#windowMs) {
      if (this.#utilization() >= this.#saturated) {
        this.#since ??= this.#lastSlackStart;
      } else {
        this.#since = undefined;
        this.#lastSlackStart = this.#windowStart;
      }
      this.#windowStart = now;
    }
    return this.#since === undefined ? 0 : Math.min(this.#maxMs, now - this.#since);
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

/** The process's own: one event loop, one lag (its timer starts with the first call). */
export const processReadLag = new ReadLag();

/** `processReadLag.ms`, to hand to what takes the lag as a function (token buckets' slack, the metrics). */
export const processReadLagMs = (): number => processReadLag.ms();

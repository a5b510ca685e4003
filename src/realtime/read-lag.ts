import { type LoadReader, LoopLoad, type LoopLoadOptions, processLoopLoad } from './loop-load.js';

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
 * The loop's load is read in windows (`LoopLoad`, shared with the hub's tick spacing): a window busy for at least
 * 95 % of its time, or ended a whole window late, had no pause worth the name. The lag is the time since the start
 * of the window before the first of a run of such windows (the last one with a pause), up to `maxMs`; 0 once a
 * window had slack. A call costs a clock read and a comparison.
 */
export interface ReadLagOptions extends LoopLoadOptions {
  /** The windows to read (default: a `LoopLoad` of its own, made with these options). */
  load?: LoopLoad;
  /** The longest lag reported (ms, default 30,000). */
  maxMs?: number;
}

export class ReadLag {
  readonly #load: LoopLoad;
  readonly #reader: LoadReader;
  readonly #maxMs: number;
  /** Start of the last window that had slack, while the windows after it were saturated; undefined otherwise. */
  #since: number | undefined;
  /** Start of the last window read that had slack (set by the first read that finds windows). */
  #lastSlackStart = 0;

  constructor(options: ReadLagOptions = {}) {
    this.#load = options.load ?? new LoopLoad(options);
    this.#reader = this.#load.reader();
    this.#maxMs = options.maxMs ?? 30_000;
  }

  /** The lag in ms: 0 while the loop has slack. */
  ms(): number {
    const { windows, fresh } = this.#reader.read();
    // The first windows read, or windows before these no longer kept: the first one read starts the watch.
    if (fresh) this.#lastSlackStart = windows[0]!.start;
    for (const w of windows) {
      if (w.saturated) {
        this.#since ??= this.#lastSlackStart;
      } else {
        this.#since = undefined;
        this.#lastSlackStart = w.start;
      }
    }
    const since = this.#since;
    return since === undefined ? 0 : Math.min(this.#maxMs, this.#load.monotonic() - since);
  }
}

/** The process's own: one event loop, one lag (read from `processLoopLoad`). */
const processReadLag = new ReadLag({ load: processLoopLoad });

/** `processReadLag.ms`, to hand to what takes the lag as a function (token buckets' slack, the metrics). */
export const processReadLagMs = (): number => processReadLag.ms();

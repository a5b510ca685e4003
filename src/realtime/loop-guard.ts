/**
 * Deferred work that the event loop itself may not come round to in time, and the I/O callbacks that run it then.
 *
 * libuv's poll phase runs the callback of every ready descriptor, and while one poll returns a full batch of
 * events (1,024) it polls again at once, up to 48 times, before the loop moves on to `setImmediate` callbacks and,
 * in its next turn, to timers. A flood of small frames from thousands of sockets (the heart storm of a draw:
 * 55,000 hearts a second from 5,000 viewers) keeps every poll full, so each turn runs about 49,000 frame callbacks
 * and lasts a second or more; a group commit waiting for `setImmediate` and a room's tick waiting for its timer
 * wait as long, and chat messages reach the room seconds late while the hearts themselves are counted at once
 * (docs/BENCHMARKS.md, item 30).
 *
 * Work scheduled here runs as usual, from its `setImmediate` or `setTimeout`, or from `poke()` once it is due,
 * whichever comes first, and only once. The server pokes at the start of every frame, handshake, close and HTTP
 * request, so a long poll phase runs what has fallen due between two of its callbacks. A poke that finds nothing
 * due costs one clock read and a comparison.
 */
/**
 * A turn of the event loop that has lasted this long (ms) is a long one: work deferred to its end (the group
 * commit, a quiet room's tick, a batch of profile reads) runs from the next poke instead.
 */
export const LONG_TURN_MS = 5;

export interface LoopTask {
  /** Due at this instant (monotonic ms): a poke from then on runs it. */
  readonly at: number;
}

interface Task extends LoopTask {
  at: number;
  fn: () => void;
  done: boolean;
  immediate: NodeJS.Immediate | undefined;
  timer: NodeJS.Timeout | undefined;
}

export interface LoopGuardOptions {
  /** Monotonic clock in ms (default `performance.now`). */
  monotonic?: () => number;
  /** A task that threw (the default rethrows it on its own turn, as a throwing timer would). */
  onError?: (err: unknown) => void;
}

export class LoopGuard {
  readonly #tasks = new Set<Task>();
  /** The earliest `at` among the tasks (possibly of one already done or cancelled: then a poke recomputes it). */
  #next = Number.POSITIVE_INFINITY;
  #running = false;
  readonly #monotonic: () => number;
  readonly #onError: (err: unknown) => void;

  constructor(options: LoopGuardOptions = {}) {
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#onError =
      options.onError ??
      ((err) =>
        setImmediate(() => {
          throw err;
        }));
  }

  /** Tasks not yet run nor cancelled. */
  get size(): number {
    return this.#tasks.size;
  }

  /**
   * Runs `fn` in the check phase of this turn of the event loop (`setImmediate`), or from a poke once `maxWaitMs`
   * have passed without it: in a poll phase that has lasted that long already.
   */
  immediate(fn: () => void, maxWaitMs: number): LoopTask {
    const task = this.#add(fn, maxWaitMs);
    task.immediate = setImmediate(() => this.#run(task));
    return task;
  }

  /** Runs `fn` after `ms` (`setTimeout`), or from the first poke after that. */
  timeout(fn: () => void, ms: number): LoopTask {
    const task = this.#add(fn, ms);
    task.timer = setTimeout(() => this.#run(task), Math.max(0, ms));
    return task;
  }

  /** The task will not run (a task that has run already is left as it is). */
  cancel(task: LoopTask | undefined): void {
    if (!task) return;
    const t = task as Task;
    if (t.done) return;
    t.done = true;
    this.#forget(t);
  }

  /** Runs every task that is due, earliest first. */
  poke(): void {
    if (this.#running) return;
    const now = this.#monotonic();
    if (now < this.#next) return;
    this.#running = true;
    try {
      const due: Task[] = [];
      let next = Number.POSITIVE_INFINITY;
      for (const t of this.#tasks) {
        if (t.at <= now) due.push(t);
        else if (t.at < next) next = t.at;
      }
      // Tasks added by the ones run below lower it again.
      this.#next = next;
      if (due.length > 1) due.sort((a, b) => a.at - b.at);
      for (const t of due) this.#run(t);
    } finally {
      this.#running = false;
    }
  }

  #add(fn: () => void, delayMs: number): Task {
    const task: Task = {
      at: this.#monotonic() + Math.max(0, delayMs),
      fn,
      done: false,
      immediate: undefined,
      timer: undefined,
    };
    this.#tasks.add(task);
    if (task.at < this.#next) this.#next = task.at;
    return task;
  }

  #forget(t: Task): void {
    this.#tasks.delete(t);
    if (t.immediate) clearImmediate(t.immediate);
    if (t.timer) clearTimeout(t.timer);
    t.immediate = undefined;
    t.timer = undefined;
    if (this.#tasks.size === 0) this.#next = Number.POSITIVE_INFINITY;
  }

  #run(t: Task): void {
    if (t.done) return;
    t.done = true;
    this.#forget(t);
    try {
      t.fn();
    } catch (err) {
      this.#onError(err);
    }
  }
}

/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Something with at most one pending deadline; `deadlineSlot` is owned by `Deadlines` (-1: none pending). */
export interface WithDeadline {
  deadline: number;
  deadlineSlot: number;
}

/**
 * Many deadlines on one timer: a binary min-heap of the items themselves (each knows its place, so it leaves in
 * O(log n) when it is cancelled or moved), and one timer for the earliest. Every open socket has a token expiry;
 * a timer each costs a Timeout, its closure and context on the heap per socket, this costs a slot in an array.
 * `onDue` gets each item once its deadline has passed on `now` (the injected clock), earliest first; the timer
 * only says when to look, so a clock that is moved by hand (tests) is respected.
 */
export class Deadlines<T extends WithDeadline> {
  readonly #heap: T[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is set for. */
  #armedFor = Number.POSITIVE_INFINITY;
  #stopped = false;

  constructor(
    private readonly now: () => number,
    private readonly onDue: (item: T) => void,
  ) {}

  get size(): number {
    return this.#heap.length;
  }

  /** Sets (or moves) the item's deadline. */
  set(item: T, deadline: number): void {
    if (item.deadlineSlot >= 0) this.#remove(item);
    item.deadline = deadline;
    item.deadlineSlot = this.#heap.length;
    this.#heap.push(item);
    this.#up(item.deadlineSlot);
    this.#arm();
  }

  /** Cancels the item's deadline, if it has one. */
  delete(item: T): void {
    if (item.deadlineSlot < 0) return;
    this.#remove(item);
    this.#arm();
  }

  /** Stops the timer (the items stay, and nothing more fires). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = this.now();
    for (let top = this.#heap[0]; top && top.deadline <= now; top = this.#heap[0]) {
      this.#remove(top);
      this.onDue(top);
    }
    this.#arm();
  }

  #arm(): void {
    if (this.#stopped) return;
    const top = this.#heap[0];
    if (!top) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.#timer && top.deadline === this.#armedFor) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = top.deadline;
    const wait = Math.min(Math.max(top.deadline - this.now(), 0), MAX_TIMER_MS);
    this.#timer = setTimeout(() => this.#fire(), wait);
    this.#timer.unref();
  }

  #remove(item: T): void {
    const heap = this.#heap;
    const i = item.deadlineSlot;
    item.deadlineSlot = -1;
    const last = heap.pop()!;
    if (last === item) return;
    heap[i] = last;
    last.deadlineSlot = i;
    this.#down(i);
    this.#up(last.deadlineSlot);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const item = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p.deadline <= item.deadline) break;
      heap[i] = p;
      p.deadlineSlot = i;
      i = parent;
    }
    heap[i] = item;
    item.deadlineSlot = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.deadline < heap[l]!.deadline ? r : l;
      const child = heap[c]!;
      if (child.deadline >= item.deadline) break;
      heap[i] = child;
      child.deadlineSlot = i;
      i = c;
    }
    heap[i] = item;
    item.deadlineSlot = i;
  }
}

/** `p`, or a rejection once `ms` have passed without it settling. */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

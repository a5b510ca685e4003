import type { ChatStore, NewMessage, StoredMessage, WriteBatch, WriteBatchResult } from '../store/types.js';

type MessageResult = { message: StoredMessage; duplicate: boolean };
type LikeResult = WriteBatchResult['messageLikes'][number];

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

/**
 * Group commit (DESIGN §2): everything submitted while the previous transaction is in flight, or during the
 * current turn of the event loop, goes into one transaction. `onCommitted` sees each batch and its result
 * after the commit and before any caller is answered, so events go out in commit order and nothing is
 * acknowledged before it is durable.
 */
export class CommitQueue {
  #batch: WriteBatch = emptyBatch();
  #messageWaiters: Waiter<MessageResult>[] = [];
  #heartWaiters: Array<Waiter<number> & { sessionId: number }> = [];
  #likeWaiters: Waiter<LikeResult>[] = [];
  #scheduled = false;
  #inFlight: Promise<void> | undefined;
  #closed = false;
  #lazyTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ChatStore,
    private readonly onCommitted: (batch: WriteBatch, result: WriteBatchResult, committedAt: number) => void,
    private readonly onError: (err: unknown, batch: WriteBatch) => void,
    private readonly now: () => number = Date.now,
    private readonly onTiming: (ms: number, items: number) => void = () => {},
    private readonly lazyMs = 1000,
  ) {}

  message(message: NewMessage): Promise<MessageResult> {
    return this.#enqueue((b) => b.messages.push(message), this.#messageWaiters);
  }

  /** Adds session hearts; resolves with the session's total after the commit. */
  hearts(sessionId: number, count: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.addHearts(sessionId, count);
      this.#heartWaiters.push({ resolve, reject, sessionId });
    });
  }

  /**
   * Adds session hearts nobody waits for (a heart from a socket: its answer is the coalesced
   * `session_like_update`). Consecutive hearts of one session share one entry of the batch.
   */
  addHearts(sessionId: number, count: number): void {
    this.#assertOpen();
    const last = this.#batch.hearts.at(-1);
    // Waiters get their session's total, whichever entry carried their hearts.
    if (last && last.sessionId === sessionId) last.count += count;
    else this.#batch.hearts.push({ sessionId, count });
    this.#schedule();
  }

  messageLike(op: WriteBatch['messageLikes'][number]): Promise<LikeResult> {
    return this.#enqueue((b) => b.messageLikes.push(op), this.#likeWaiters);
  }

  /** Presence (`live_chat_viewers`, for monitoring) is written like user claims (see `user`). */
  viewer(change: WriteBatch['viewers'][number]): void {
    if (this.#closed) return;
    this.#batch.viewers.push(change);
    this.#lazy();
  }

  /**
   * A user's claims are written with the next batch, or within `lazyMs` (1 s) when nothing else comes; nobody
   * waits for them (see `previewUsersFromClaims`). A crowd arriving one handshake per turn of the event loop then
   * costs a transaction a second, not one each (on SQLite an fsync each, which holds the event loop: in a connect
   * phase of 5,000 new viewers, with one every 100 ms, the commits of their rows took a sixth of it).
   */
  user(input: WriteBatch['users'][number]): void {
    if (this.#closed) return;
    this.#batch.users.push(input);
    this.#lazy();
  }

  #lazy(): void {
    this.#lazyTimer ??= setTimeout(() => {
      this.#lazyTimer = undefined;
      this.#schedule();
    }, this.lazyMs);
  }

  /** A transaction is scheduled for this turn of the event loop, or running. */
  get busy(): boolean {
    return this.#scheduled || this.#inFlight !== undefined;
  }

  /** Resolves when everything submitted so far is committed (or failed). */
  async drain(): Promise<void> {
    while (this.#inFlight || this.#scheduled || !isEmpty(this.#batch)) {
      if (this.#inFlight) await this.#inFlight;
      else await this.#run();
    }
  }

  /** Refuses new work, then drains. */
  async close(): Promise<void> {
    await this.drain();
    this.#closed = true;
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('commit queue is closed');
  }

  #enqueue<T>(add: (b: WriteBatch) => void, waiters: Waiter<T>[]): Promise<T> {
    this.#assertOpen();
    return new Promise<T>((resolve, reject) => {
      add(this.#batch);
      waiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    setImmediate(() => {
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#scheduled = false;
    if (this.#lazyTimer) {
      clearTimeout(this.#lazyTimer);
      this.#lazyTimer = undefined;
    }
    if (this.#inFlight || isEmpty(this.#batch)) return;
    const batch = this.#batch;
    const messageWaiters = this.#messageWaiters;
    const heartWaiters = this.#heartWaiters;
    const likeWaiters = this.#likeWaiters;
    this.#batch = emptyBatch();
    this.#messageWaiters = [];
    this.#heartWaiters = [];
    this.#likeWaiters = [];

    const run = (async () => {
      let result: WriteBatchResult;
      try {
        const started = performance.now();
        result = await this.store.write(batch);
        this.onTiming(performance.now() - started, size(batch));
      } catch (err) {
        this.onError(err, batch);
        for (const w of [...messageWaiters, ...heartWaiters, ...likeWaiters]) w.reject(err);
        return;
      }
      try {
        this.onCommitted(batch, result, this.now());
      } catch (err) {
        // Delivery failed, but the batch is durable: acknowledge it anyway; resume fills any gap.
        this.onError(err, batch);
      }
      for (let i = 0; i < messageWaiters.length; i++) messageWaiters[i]!.resolve(result.messages[i]!);
      for (let i = 0; i < likeWaiters.length; i++) likeWaiters[i]!.resolve(result.messageLikes[i]!);
      const totals = new Map(result.hearts.map((h) => [h.sessionId, h.totalLikes]));
      for (const w of heartWaiters) w.resolve(totals.get(w.sessionId) ?? 0);
    })();
    this.#inFlight = run;
    try {
      await run;
    } finally {
      this.#inFlight = undefined;
      if (!isEmpty(this.#batch)) this.#schedule();
    }
  }
}

function emptyBatch(): WriteBatch {
  return { messages: [], hearts: [], messageLikes: [], viewers: [], users: [] };
}

/** Items in a batch (entries, not hearts: consecutive hearts of a session share one). */
function size(b: WriteBatch): number {
  return b.messages.length + b.hearts.length + b.messageLikes.length + b.viewers.length + b.users.length;
}

function isEmpty(b: WriteBatch): boolean {
  return size(b) === 0;
}

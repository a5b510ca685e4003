import { LONG_TURN_MS, LoopGuard, type LoopTask } from '../realtime/loop-guard.js';
import { isStoreUnavailable } from '../store/errors.js';
import type { ChatStore, NewMessage, StoredMessage, WriteBatch, WriteBatchResult } from '../store/types.js';

type MessageResult = { message: StoredMessage; duplicate: boolean };
type LikeResult = WriteBatchResult['messageLikes'][number];

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

export interface CommitQueueOptions {
  /** Wall clock for `committedAt` (default `Date.now`). */
  now?: () => number;
  /** Each commit's duration (ms) and number of items. */
  onTiming?: (ms: number, items: number) => void;
  /** User claims and viewer rows wait at most this long for a batch to go with (ms, default 1,000). */
  lazyMs?: number;
  /** Hearts nobody waits for wait at most this long (ms, default 50; see `addHearts`). */
  heartMs?: number;
  /** Runs the commit from an I/O callback when the turn has lasted `LONG_TURN_MS` (see `LoopGuard`). */
  guard?: LoopGuard;
}

/**
 * Group commit (DESIGN §2): everything submitted while the previous transaction is in flight, or during the
 * current turn of the event loop (at most `LONG_TURN_MS` of a long one, see `LoopGuard`), goes into one
 * transaction. `onCommitted` sees each batch and its result after the commit and before any caller is answered,
 * so events go out in commit order and nothing is acknowledged before it is durable. A transaction that fails
 * because the database is away fails everyone waiting for it (they resend); what nobody waits for goes with the
 * next one (see `#carry`).
 */
export class CommitQueue {
  #batch: WriteBatch = emptyBatch();
  #messageWaiters: Waiter<MessageResult>[] = [];
  #heartWaiters: Array<Waiter<number> & { sessionId: number; count: number }> = [];
  #likeWaiters: Waiter<LikeResult>[] = [];
  /** A commit was asked for (by an item someone waits for, or by a timer) since the current one took its batch. */
  #wanted = false;
  /** The transaction asked for this turn of the event loop (see `#schedule`), until it runs. */
  #scheduledTask: LoopTask | undefined;
  #inFlight: Promise<void> | undefined;
  /** The last transaction failed because the database is away; what it carried waits for `lazyMs` (see `drain`). */
  #outage = false;
  #closed = false;
  #lazyTimer: LoopTask | undefined;
  #heartTimer: LoopTask | undefined;

  readonly #now: () => number;
  readonly #onTiming: (ms: number, items: number) => void;
  readonly #lazyMs: number;
  readonly #heartMs: number;
  readonly #guard: LoopGuard;

  constructor(
    private readonly store: ChatStore,
    private readonly onCommitted: (batch: WriteBatch, result: WriteBatchResult, committedAt: number) => void,
    private readonly onError: (err: unknown, batch: WriteBatch) => void,
    options: CommitQueueOptions = {},
  ) {
    this.#now = options.now ?? Date.now;
    this.#onTiming = options.onTiming ?? (() => {});
    this.#lazyMs = options.lazyMs ?? 1000;
    this.#heartMs = options.heartMs ?? 50;
    this.#guard = options.guard ?? new LoopGuard();
  }

  message(message: NewMessage): Promise<MessageResult> {
    return this.#enqueue((b) => b.messages.push(message), this.#messageWaiters);
  }

  /** Adds session hearts; resolves with the session's total after the commit. */
  hearts(sessionId: number, count: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.addHearts(sessionId, count);
      this.#heartWaiters.push({ resolve, reject, sessionId, count });
      this.#schedule();
    });
  }

  /**
   * Adds session hearts nobody waits for (a heart from a socket: its answer is the coalesced
   * `session_like_update`, at most a few a second). Consecutive hearts of one session share one entry of the
   * batch. They go with the next transaction, or within `heartMs` (50 ms) when nothing else comes: in a heart
   * storm a commit each turn of the event loop (each `LONG_TURN_MS` of a long one) was a synchronous fsync each
   * on SQLite, for hearts that nobody sees before the next count update anyway.
   */
  addHearts(sessionId: number, count: number): void {
    this.#assertOpen();
    const last = this.#batch.hearts.at(-1);
    // Waiters get their session's total, whichever entry carried their hearts.
    if (last && last.sessionId === sessionId) last.count += count;
    else this.#batch.hearts.push({ sessionId, count });
    this.#heartTimer ??= this.#guard.timeout(() => {
      this.#heartTimer = undefined;
      this.#schedule();
    }, this.#heartMs);
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
    this.#lazyTimer ??= this.#guard.timeout(() => {
      this.#lazyTimer = undefined;
      this.#schedule();
    }, this.#lazyMs);
  }

  /** A transaction is scheduled for this turn of the event loop, or running. */
  get busy(): boolean {
    return this.#scheduledTask !== undefined || this.#inFlight !== undefined;
  }

  /**
   * Resolves when everything submitted so far is committed (or failed). While the database is away, what an
   * outage carried over (see `#carry`) is left to its timer rather than tried again and again here.
   */
  async drain(): Promise<void> {
    while (this.#inFlight || this.#scheduledTask || (!isEmpty(this.#batch) && !this.#outage)) {
      if (this.#inFlight) await this.#inFlight;
      else await this.#run();
    }
  }

  /**
   * After a transaction failed because the database is away: its hearts from sockets, viewer rows and user claims
   * go first in the next one, which runs within `lazyMs` (or sooner, with the next item someone waits for), so an
   * outage loses none of them. Errors that say the batch itself is wrong do not come here: those would fail again.
   */
  #carry(batch: WriteBatch, heartWaiters: ReadonlyArray<{ sessionId: number; count: number }>): void {
    if (this.#closed) return;
    const left = carried(batch, heartWaiters);
    if (isEmpty(left)) return;
    const next = this.#batch;
    next.hearts.unshift(...left.hearts);
    next.viewers = compactViewers([...left.viewers, ...next.viewers]);
    next.users = compactUsers([...left.users, ...next.users]);
    this.#lazy();
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
    this.#wanted = true;
    if (this.#scheduledTask || this.#inFlight) return;
    this.#scheduledTask = this.#guard.immediate(() => void this.#run(), LONG_TURN_MS);
  }

  async #run(): Promise<void> {
    this.#guard.cancel(this.#scheduledTask);
    this.#scheduledTask = undefined;
    if (this.#inFlight || isEmpty(this.#batch)) return;
    // Everything waiting goes in this transaction: its timers are done.
    this.#guard.cancel(this.#lazyTimer);
    this.#lazyTimer = undefined;
    this.#guard.cancel(this.#heartTimer);
    this.#heartTimer = undefined;
    this.#wanted = false;
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
        this.#onTiming(performance.now() - started, size(batch));
        this.#outage = false;
      } catch (err) {
        this.onError(err, batch);
        for (const w of [...messageWaiters, ...heartWaiters, ...likeWaiters]) w.reject(err);
        this.#outage = isStoreUnavailable(err);
        if (this.#outage) this.#carry(batch, heartWaiters);
        return;
      }
      try {
        this.onCommitted(batch, result, this.#now());
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
      // What came meanwhile and is waited for goes now; hearts, claims and presence alone wait for their timers.
      if (this.#wanted && !isEmpty(this.#batch)) this.#schedule();
    }
  }
}

/**
 * Of a batch whose transaction failed, what nobody waits for and nobody would resend: hearts from sockets (the
 * batch's hearts less those of `hearts()` callers, who were refused), viewer rows and user claims. Viewer changes
 * keep the first and the last of each (session, user), which is all the store reads of them (first_seen_at, and
 * where they end), and claims the last of each user, so that a long outage holds one or two entries per person,
 * not one per change.
 */
function carried(
  batch: WriteBatch,
  heartWaiters: ReadonlyArray<{ sessionId: number; count: number }>,
): WriteBatch {
  const hearts = new Map<number, number>();
  for (const h of batch.hearts) hearts.set(h.sessionId, (hearts.get(h.sessionId) ?? 0) + h.count);
  for (const w of heartWaiters) hearts.set(w.sessionId, (hearts.get(w.sessionId) ?? 0) - w.count);
  return {
    ...emptyBatch(),
    hearts: [...hearts].filter(([, count]) => count > 0).map(([sessionId, count]) => ({ sessionId, count })),
    viewers: batch.viewers,
    users: batch.users,
  };
}

function compactViewers(changes: WriteBatch['viewers']): WriteBatch['viewers'] {
  const ends = new Map<
    string,
    { first: WriteBatch['viewers'][number]; last: WriteBatch['viewers'][number] }
  >();
  for (const v of changes) {
    const key = JSON.stringify([v.sessionId, v.userId]);
    const seen = ends.get(key);
    if (seen) seen.last = v;
    else ends.set(key, { first: v, last: v });
  }
  return [...ends.values()].flatMap(({ first, last }) => (first === last ? [first] : [first, last]));
}

function compactUsers(users: WriteBatch['users']): WriteBatch['users'] {
  return [...new Map(users.map((u) => [u.id, u])).values()];
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

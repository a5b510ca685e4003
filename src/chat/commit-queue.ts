import { LONG_TURN_MS, LoopGuard, type LoopTask } from '../realtime/loop-guard.js';
import { isStoreUnavailable, isStoreUnreached } from '../store/errors.js';
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
  /** The last transaction failed because the database is away (see `#carry`). */
  #outage = false;
  /** What failed transactions left for later (see `#carry`), kept apart from `#batch`. */
  #carried: Carried = emptyCarried();
  /** The lazy timer fired (or `drain` asks): the next transaction takes `#carried` along, outage or not. */
  #carriedDue = false;
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
      this.#carriedDue = true;
      this.#schedule();
    }, this.#lazyMs);
  }

  /** `#carried` goes with the next transaction: the database is back, or it is time to try again. */
  #carriedReady(): boolean {
    return carriedSize(this.#carried) > 0 && (!this.#outage || this.#carriedDue);
  }

  /** A transaction is scheduled for this turn of the event loop, or running. */
  get busy(): boolean {
    return this.#scheduledTask !== undefined || this.#inFlight !== undefined;
  }

  /**
   * Resolves when everything submitted so far is committed (or failed). What an outage carried over (see
   * `#carry`) is tried once per call, not again and again while the database stays away.
   */
  async drain(): Promise<void> {
    let carriedTried = false;
    for (;;) {
      if (this.#inFlight) {
        await this.#inFlight;
        continue;
      }
      const carried = carriedSize(this.#carried) > 0 && !carriedTried;
      if (!this.#scheduledTask && isEmpty(this.#batch) && !carried) return;
      if (carried) {
        this.#carriedDue = true;
        carriedTried = true;
      }
      await this.#run();
    }
  }

  /**
   * After a transaction failed because the database is away: what nobody waits for, and so nobody would resend
   * (hearts from sockets, viewer rows, user claims), is kept in `#carried` and goes with a later transaction:
   * within `lazyMs` (1 s), and once a second while the database stays away, never with every attempt of the
   * callers who resend. Viewer changes keep the first and the last of each (session, user), all the store reads
   * of them (first_seen_at, and where they end), and claims the last of each user: a long outage holds one or two
   * entries per person. Hearts only when the transaction never reached the database (`unreached`): after a lost
   * connection the COMMIT may have happened, and hearts, unlike the rest, would count twice. Errors that say the
   * batch itself is wrong do not come here: those would fail again.
   */
  #carry(
    own: WriteBatch,
    heartWaiters: ReadonlyArray<{ sessionId: number; count: number }>,
    taken: Carried | undefined,
    unreached: boolean,
  ): void {
    if (this.#closed) return;
    // Nothing is carried while a transaction is out, so `#carried` is empty when `taken` comes back; if not, the
    // newer entries win.
    const into = taken ?? this.#carried;
    if (taken && carriedSize(this.#carried) > 0) mergeCarried(into, this.#carried);
    this.#carried = into;
    if (!unreached) into.hearts.clear();
    else {
      const left = new Map<number, number>();
      for (const h of own.hearts) left.set(h.sessionId, (left.get(h.sessionId) ?? 0) + h.count);
      for (const w of heartWaiters) left.set(w.sessionId, (left.get(w.sessionId) ?? 0) - w.count);
      for (const [sessionId, count] of left)
        if (count > 0) into.hearts.set(sessionId, (into.hearts.get(sessionId) ?? 0) + count);
    }
    for (const v of own.viewers) {
      const key = JSON.stringify([v.sessionId, v.userId]);
      const ends = into.viewers.get(key);
      if (ends) ends.last = v;
      else into.viewers.set(key, { first: v, last: v });
    }
    for (const u of own.users) into.users.set(u.id, u);
    if (carriedSize(into) > 0) this.#lazy();
  }

  /**
   * Refuses new work, then drains. Returns what an outage had carried over and this last try could not write
   * either (dropped now: the caller logs it).
   */
  async close(): Promise<{ hearts: number; viewers: number; users: number }> {
    await this.drain();
    this.#closed = true;
    this.#guard.cancel(this.#lazyTimer);
    this.#lazyTimer = undefined;
    this.#guard.cancel(this.#heartTimer);
    this.#heartTimer = undefined;
    const left = this.#carried;
    this.#carried = emptyCarried();
    let hearts = 0;
    for (const n of left.hearts.values()) hearts += n;
    return { hearts, viewers: left.viewers.size, users: left.users.size };
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
    if (this.#inFlight || (isEmpty(this.#batch) && !this.#carriedReady())) return;
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
    let taken: Carried | undefined;
    if (this.#carriedReady()) {
      taken = this.#carried;
      this.#carried = emptyCarried();
    }
    this.#carriedDue = false;
    const write = taken ? withCarried(batch, taken) : batch;

    const run = (async () => {
      let result: WriteBatchResult;
      try {
        const started = performance.now();
        result = await this.store.write(write);
        this.#onTiming(performance.now() - started, size(write));
        this.#outage = false;
      } catch (err) {
        this.onError(err, write);
        for (const w of [...messageWaiters, ...heartWaiters, ...likeWaiters]) w.reject(err);
        this.#outage = isStoreUnavailable(err);
        if (this.#outage) this.#carry(batch, heartWaiters, taken, isStoreUnreached(err));
        return;
      }
      try {
        this.onCommitted(write, result, this.#now());
      } catch (err) {
        // Delivery failed, but the batch is durable: acknowledge it anyway; resume fills any gap.
        this.onError(err, write);
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

/** What failed transactions left for later (see `CommitQueue.#carry`), merged per key. */
interface Carried {
  /** Session id → hearts. */
  hearts: Map<number, number>;
  /** `[sessionId, userId]` as JSON → the first and the last change carried. */
  viewers: Map<string, { first: WriteBatch['viewers'][number]; last: WriteBatch['viewers'][number] }>;
  /** User id → the last claims carried. */
  users: Map<string, WriteBatch['users'][number]>;
}

function emptyCarried(): Carried {
  return { hearts: new Map(), viewers: new Map(), users: new Map() };
}

function carriedSize(c: Carried): number {
  return c.hearts.size + c.viewers.size + c.users.size;
}

/** Adds `newer` to `into`. */
function mergeCarried(into: Carried, newer: Carried): void {
  for (const [sessionId, n] of newer.hearts)
    into.hearts.set(sessionId, (into.hearts.get(sessionId) ?? 0) + n);
  for (const [key, ends] of newer.viewers) {
    const older = into.viewers.get(key);
    into.viewers.set(key, older ? { first: older.first, last: ends.last } : ends);
  }
  for (const [id, u] of newer.users) into.users.set(id, u);
}

/** The batch with what was carried over before its own items (which are newer). */
function withCarried(batch: WriteBatch, carried: Carried): WriteBatch {
  return {
    messages: batch.messages,
    messageLikes: batch.messageLikes,
    hearts: [...[...carried.hearts].map(([sessionId, count]) => ({ sessionId, count })), ...batch.hearts],
    viewers: [
      ...[...carried.viewers.values()].flatMap(({ first, last }) =>
        first === last ? [first] : [first, last],
      ),
      ...batch.viewers,
    ],
    users: [...carried.users.values(), ...batch.users],
  };
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

import { withTimeout } from '../domain/deadlines.js';
import type { StoredMessage } from '../store/types.js';

export interface SequencedMessage {
  message: StoredMessage;
  /** Id of the message committed just before it in its session (0 for the first). */
  prevId: number;
  committedAt: number;
}

export interface SequencerOptions {
  /** Reads committed messages of a session after an id, oldest first, at most `pageSize` (the database). */
  fetchAfter(sessionId: number, afterId: number, pageSize: number): Promise<StoredMessage[]>;
  /** Rows per read; a full page is followed by another read. */
  pageSize?: number;
  /** Receives every message exactly once, in id order. */
  deliver(sessionId: number, message: StoredMessage, committedAt: number): void;
  /** How long a message waits for its predecessor before the gap is read from the database. */
  holdMs?: number;
  onGapFill?(sessionId: number, fetched: number): void;
  onError?(err: unknown): void;
  now?: () => number;
}

interface Stream {
  lastId: number;
  /** Messages that arrived ahead of their predecessor, by prevId, each with the count of holds when it came. */
  held: Map<number, { m: SequencedMessage; n: number }>;
  /** Messages held so far in this stream: which of them came while a read was in flight. */
  holds: number;
  timer: NodeJS.Timeout | undefined;
  filling: Promise<void> | undefined;
  /** The catch-up asked for while `filling` was in flight: one more read, once it ends. */
  again: Promise<void> | undefined;
}

/**
 * Puts a session's committed messages back in order when they arrive from several nodes (DESIGN §4). Each
 * message names its predecessor, so a gap is known exactly; a gap that is not filled within `holdMs`, and any
 * `catchUp()`, is read from the database. Publishing may lose or reorder messages; this loses neither.
 */
export class Sequencer {
  readonly #streams = new Map<number, Stream>();
  readonly #holdMs: number;
  readonly #pageSize: number;
  readonly #now: () => number;

  constructor(private readonly options: SequencerOptions) {
    this.#holdMs = options.holdMs ?? 150;
    this.#pageSize = options.pageSize ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Starts (or restarts) a session's stream after `lastId`, the newest message already delivered. */
  open(sessionId: number, lastId: number): void {
    this.close(sessionId);
    this.#streams.set(sessionId, {
      lastId,
      held: new Map(),
      holds: 0,
      timer: undefined,
      filling: undefined,
      again: undefined,
    });
  }

  /**
   * Ends a session's stream when its window closes: reads what was committed and not delivered yet (other nodes'
   * last messages, and the predecessors of messages held here), for at most `timeoutMs`; delivers what is still
   * held, in id order; then closes. `close` alone drops what is held: a message of this node's held behind
   * another's would then reach nobody live, its sender included.
   */
  async finish(sessionId: number, timeoutMs: number): Promise<void> {
    const s = this.#streams.get(sessionId);
    if (!s) return;
    await withTimeout(this.catchUp(sessionId), timeoutMs).catch(() => undefined);
    if (this.#streams.get(sessionId) !== s) return;
    for (const { m } of [...s.held.values()].sort((a, b) => a.m.message.id - b.m.message.id)) {
      if (m.message.id > s.lastId) this.#deliver(sessionId, s, m.message, m.committedAt);
    }
    s.held.clear();
    this.close(sessionId);
  }

  close(sessionId: number): void {
    const s = this.#streams.get(sessionId);
    if (s?.timer) clearTimeout(s.timer);
    this.#streams.delete(sessionId);
  }

  lastId(sessionId: number): number | undefined {
    return this.#streams.get(sessionId)?.lastId;
  }

  accept(sessionId: number, m: SequencedMessage): void {
    const s = this.#streams.get(sessionId);
    if (!s || m.message.id <= s.lastId) return;
    if (m.prevId <= s.lastId) {
      this.#deliver(sessionId, s, m.message, m.committedAt);
      this.#drain(sessionId, s);
      return;
    }
    s.held.set(m.prevId, { m, n: ++s.holds });
    s.timer ??= setTimeout(() => {
      s.timer = undefined;
      void this.catchUp(sessionId);
    }, this.#holdMs);
  }

  /**
   * Reads from the database whatever came after the last delivered message (after a gap, or a reconnect). Ends
   * once a read that began after the call has ended: asked for while a read is in flight, it reads again after
   * that one (which may have begun before what the caller waits for was committed); calls during the same read
   * share that next one.
   */
  catchUp(sessionId: number): Promise<void> {
    const s = this.#streams.get(sessionId);
    if (!s) return Promise.resolve();
    if (s.filling) {
      s.again ??= s.filling.then(() => {
        s.again = undefined;
        return this.catchUp(sessionId);
      });
      return s.again;
    }
    s.filling = (async () => {
      try {
        for (;;) {
          const after = s.lastId;
          const holdsBefore = s.holds;
          const rows = await this.options.fetchAfter(sessionId, after, this.#pageSize);
          if (this.#streams.get(sessionId) !== s) return;
          let fetched = 0;
          for (const m of rows) {
            if (m.id <= s.lastId) continue;
            this.#deliver(sessionId, s, m, this.#now());
            fetched++;
          }
          if (fetched > 0) this.options.onGapFill?.(sessionId, fetched);
          // Held messages at or below what the database had are now delivered; the rest may chain on.
          for (const [prev, held] of s.held) if (held.m.message.id <= s.lastId) s.held.delete(prev);
          this.#drain(sessionId, s);
          // A full page may mean more.
          if (rows.length === this.#pageSize && s.lastId !== after) continue;
          // A message held while this read was in flight may follow messages committed after the read began,
          // which it could not see (delivering it now would skip them for good): read again.
          if (![...s.held.values()].some((held) => held.n > holdsBefore)) break;
        }
        // What is still held came before the last read began (so was committed by then) and that read did not
        // return it: deleted since, as reads skip deleted messages. Delivered rather than kept back for ever (a
        // deletion may already be on its way), in id order.
        if (s.held.size > 0) {
          for (const { m } of [...s.held.values()].sort((a, b) => a.m.message.id - b.m.message.id)) {
            if (m.message.id > s.lastId) this.#deliver(sessionId, s, m.message, m.committedAt);
          }
          s.held.clear();
        }
      } catch (err) {
        this.options.onError?.(err);
        // The database is away: try again later; nothing is dropped meanwhile.
        s.timer ??= setTimeout(() => {
          s.timer = undefined;
          void this.catchUp(sessionId);
        }, this.#holdMs * 4);
      } finally {
        s.filling = undefined;
      }
    })();
    return s.filling;
  }

  /** Every open session catches up (a shared bus came back, or the periodic safety poll). */
  async catchUpAll(): Promise<void> {
    await Promise.all([...this.#streams.keys()].map((id) => this.catchUp(id)));
  }

  #deliver(sessionId: number, s: Stream, message: StoredMessage, committedAt: number): void {
    s.lastId = message.id;
    this.options.deliver(sessionId, message, committedAt);
  }

  #drain(sessionId: number, s: Stream): void {
    for (;;) {
      const next = s.held.get(s.lastId)?.m;
      if (!next) break;
      s.held.delete(s.lastId);
      this.#deliver(sessionId, s, next.message, next.committedAt);
    }
    if (s.held.size === 0 && s.timer) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
  }
}

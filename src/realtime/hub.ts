import { CloseCode } from '../protocol/close-codes.js';
import type { ServerEvent } from '../protocol/messages.js';
import { LONG_TURN_MS, LoopGuard, type LoopTask } from './loop-guard.js';
import { type LoadReader, LoopLoad, processLoopLoad } from './loop-load.js';
import type { HubSocket } from './socket.js';

/** One serialised event, shared by every recipient of a tick. */
interface Frame {
  json: string;
  /** For `new_message`: lets a connection that is still initialising drop what its `init` already holds. */
  messageId?: number;
}

/** The `pending` of every ready connection (nothing is added to it after `ready`). */
const NO_FRAMES: Frame[] = [];

/** Frames a connection whose `init` holds the messages up to `lastMessageId` still needs. */
function notIn(lastMessageId: number): (f: Frame) => boolean {
  return (f) => f.messageId === undefined || f.messageId > lastMessageId;
}

export interface HubConnection {
  readonly id: number;
  readonly sessionId: number;
  readonly userId: string;
  /** Opted in with `batch=1`: every frame is a JSON array of events. */
  readonly batch: boolean;
  readonly socket: HubSocket;
}

interface ConnState extends HubConnection {
  ready: boolean;
  /** Frames that arrived while `init` was being prepared. */
  pending: Frame[];
  /**
   * Set by `ready` when the room's outbox (queued, not yet flushed) holds messages that `init` already has: the
   * next flush skips messages up to this id for this connection.
   */
  skipUpTo?: number;
  /**
   * Bytes of send buffer allowed beyond `maxBufferedBytes` until the buffer first drains below that: the size of
   * `init` (a resume can carry 1,000 messages, more than a slow link sends in one tick), so that a client that is
   * reading is not cut off for its own resume, to resume again with the same. Cleared once drained.
   */
  allowance?: number;
}

interface Room {
  readonly sessionId: number;
  readonly conns: Set<ConnState>;
  /** userId → open connections of that user in this room on this node. */
  readonly users: Map<string, number>;
  outbox: Frame[];
  flushScheduled: boolean;
  /** Set while a flush waits for the end of the room's minimum gap between ticks. */
  flushTimer: LoopTask | undefined;
  /** When the last flush started (ms, monotonic), and what it cost: the next tick waits in proportion. */
  lastFlushStart: number;
  flushCostMs: number;
  /** Latest values of coalesced counters, sent at most every `countIntervalMs` (more in a big room). */
  totalLikes: number | undefined;
  viewerCount: number | undefined;
  readonly messageLikes: Map<number, number>;
  countTimer: LoopTask | undefined;
  lastCountFlush: number;
  /** Commit times of the messages in the outbox, for the commit-to-send latency metric. */
  committedAt: number[];
  /** Joins in the window (`JOIN_WINDOW_MS`) starting at `joinWindowStart` (monotonic ms), and in the one before. */
  joinWindowStart: number;
  joinsThisWindow: number;
  joinsLastWindow: number;
}

/**
 * Joins are counted per room in windows of this length (see `stormJoinsPerSecond`): short, so that a room's ticks
 * are back to their usual pace within a second of the last burst of joins.
 */
const JOIN_WINDOW_MS = 500;

/**
 * Windows in a row without slack (a second) before ticks are spaced out: a heart storm saturates the loop for as
 * long as it lasts, a busy room at the edge of its capacity, whose own ticks are most of the loop's work, in one
 * window now and then, and spacing its ticks only made its messages later (docs/BENCHMARKS.md, item 31).
 */
const SUSTAINED_WINDOWS = 4;
/** How much further apart each window of saturation spaces a busy room's ticks (and back, each window with slack). */
const STRETCH_STEP = 1.25;

/** The longest a room's size alone makes its count updates wait (see `countWritesPerSecond`). */
const MAX_COUNT_BUDGET_INTERVAL_MS = 2_000;

export interface HubOptions {
  /** Minimum time between two count updates in one room (viewers, hearts, message likes). */
  countIntervalMs?: number;
  /**
   * And at least `countCostFactor` (default 10) times what the room's last tick cost: in a quiet room, a tick
   * that only carries counts writes every socket, so in a big one (thousands of sockets, tens of ms a tick) they
   * take at most a tenth of the event loop. Counts that change while messages flow still go out with the next
   * message tick once their interval is up.
   */
  countCostFactor?: number;
  /**
   * And far enough apart that a room's count updates make at most about this many socket writes a second
   * (default 5,000), never more than 2 s apart for that reason: 250 ms in a room of up to 1,250 sockets, 1 s in
   * one of 5,000, 2 s from 10,000 on. Each count-only tick writes every socket of the room; while thousands join
   * (the minute before a draw) the viewer count changes all the time, and at 4 updates a second those writes
   * were most of what the server wrote. SPEC: counts "may be coalesced (a few per second at most)".
   */
  countWritesPerSecond?: number;
  /** A socket with more than this many bytes queued is cut off with 4408 (it can resume with `since`). */
  maxBufferedBytes?: number;
  /** A connection still initialising may hold this many frames before it is cut off. */
  maxPendingFrames?: number;
  /**
   * A busy room's ticks start `tickCostFactor` (default 2) times what the previous tick cost (writing to every
   * socket of the room) after it started, at most `maxTickMs` (default 100) after it, or a few turns of the event
   * loop after it ended if it cost more (so that the commits of what was read meanwhile go with it, see
   * `pendingWork`): a quiet or small room is written at once (end of this turn of the event loop), a big busy one
   * gathers more events per tick, and writes take at most half of the event loop until ticks reach `maxTickMs`.
   */
  tickCostFactor?: number;
  maxTickMs?: number;
  /**
   * While a room fills fast, as in a reconnect storm (sockets joined it at `stormJoinsPerSecond`, default 200, or
   * more over the current or the previous half second), its ticks start `stormTickCostFactor` (default 4) times what the
   * previous one cost after it, at most `stormMaxTickMs` (default 250): the writes to those already back take at
   * most about a quarter of the event loop instead of half, and the handshakes of the others get the rest. Those
   * already back get their messages in fewer, bigger ticks for those seconds.
   */
  stormJoinsPerSecond?: number;
  stormTickCostFactor?: number;
  stormMaxTickMs?: number;
  /**
   * The event loop's load, in windows (default: the process's, `processLoopLoad`, read on a timer). Once
   * `SUSTAINED_WINDOWS` windows in a row were saturated (`LoadWindow.saturated`: busy 95 % of the time or more),
   * the loop has no slack: a heart storm's frames, say, take what the ticks leave and queue behind them. Busy
   * rooms' ticks are then spaced further apart, a quarter more each such window, up to `stormMaxTickMs`, and come
   * back a quarter for each window under it: each tick writes every socket whatever it carries, so fewer ticks are
   * what frees the loop. Every window counts, whether or not a tick was scheduled in it (`tickSpacing`).
   */
  loopLoad?: LoopLoad;
  /**
   * Or, for tests that drive the clock by hand: the busy share of each window as it ends, from 0 to 1, for a
   * `LoopLoad` without a timer on `monotonic` (its windows end when the hub reads them).
   */
  loopUtilization?: () => number;
  /** The factor on busy rooms' gaps between ticks (see `loopLoad`), each time it changes; 1 is the usual pace. */
  onTickSpacing?: (factor: number) => void;
  /**
   * True while work queued in the current turn of the event loop will publish to rooms (the group commit of
   * frames just read): an overdue tick of a busy room waits for it, a turn at a time, at most `maxDeferrals`
   * (default 4) turns and `maxDeferralMs` (default 10) in all.
   */
  pendingWork?: () => boolean;
  maxDeferrals?: number;
  maxDeferralMs?: number;
  /**
   * Presence changes are reported in batches and netted. A departure waits `leaveDelayMs` (default 1.5 s): a user
   * who comes back before it was reported (a reconnect) never left, so resuming writes no viewer row and moves
   * no count. An arrival is reported at once, unless another one was less than `joinBatchMs` (default 100 ms)
   * ago: then it goes with the others of that window at its end, so a connection storm reaches `onPresence`
   * (and the database) in a few batches, not one by one. 0 reports at once.
   */
  joinBatchMs?: number;
  leaveDelayMs?: number;
  /** Presence: first connection of a user in a room (`active`), last one gone (`!active`). */
  onPresence?: (sessionId: number, userId: string, active: boolean) => void;
  /** Called once per delivered message with the time from commit to the socket write, in ms. */
  onDeliveryLatency?: (ms: number) => void;
  onSlowConsumer?: (conn: HubConnection) => void;
  /** Wall clock (ms), for the commit-to-send latency. */
  now?: () => number;
  /** Monotonic clock (ms; default `performance.now`) for ticks, counts and presence batching. */
  monotonic?: () => number;
  /**
   * Runs ticks and count updates from I/O callbacks when a long poll phase holds back their timers (see
   * `LoopGuard`; default: one of the hub's own, on its monotonic clock).
   */
  guard?: LoopGuard;
}

/**
 * Rooms and fan-out. Events published during one tick of a room are serialised once and written to each socket
 * once: one array frame for `batch=1` clients, corked single frames for the others (one syscall per socket per
 * tick either way). A tick ends with the current turn of the event loop, or, in a room whose last tick was
 * expensive, after a gap proportional to that cost (at most `maxTickMs`): the busier the room, the more events
 * per frame, so the work per socket stays per tick, not per message. Counts are state, not events: only the
 * latest value goes out, at most every `countIntervalMs` (less often in a big room), with the next tick.
 */
export class Hub {
  readonly #rooms = new Map<number, Room>();
  readonly #byUser = new Map<string, number>();
  readonly #countIntervalMs: number;
  readonly #countCostFactor: number;
  readonly #countWritesPerSecond: number;
  readonly #maxBufferedBytes: number;
  readonly #maxPendingFrames: number;
  readonly #tickCostFactor: number;
  readonly #maxTickMs: number;
  /** `stormJoinsPerSecond` as joins per window (`JOIN_WINDOW_MS`). */
  readonly #stormJoinsPerWindow: number;
  readonly #stormTickCostFactor: number;
  readonly #stormMaxTickMs: number;
  readonly #joinBatchMs: number;
  readonly #maxDeferrals: number;
  readonly #maxDeferralMs: number;
  /** End of the current window of arrivals (see `joinBatchMs`), on the monotonic clock. */
  #joinWindowEnd = Number.NEGATIVE_INFINITY;
  readonly #leaveDelayMs: number;
  /** `sessionId\0userId` → the presence change not yet reported, and when it is due. */
  readonly #presencePending = new Map<
    string,
    { sessionId: number; userId: string; active: boolean; due: number }
  >();
  #presenceTimer: NodeJS.Timeout | undefined;
  #presenceDue = Number.POSITIVE_INFINITY;
  readonly #options: HubOptions;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  readonly #guard: LoopGuard;
  readonly #load: LoadReader;
  /** Factor (1 or more) on busy rooms' gaps between ticks while the loop is saturated (see `loopLoad`). */
  #stretch = 1;
  /** Windows in a row the loop was saturated (see `SUSTAINED_WINDOWS`). */
  #saturatedWindows = 0;
  #nextId = 1;
  #connections = 0;

  constructor(options: HubOptions = {}) {
    this.#options = options;
    this.#countIntervalMs = options.countIntervalMs ?? 250;
    this.#countCostFactor = options.countCostFactor ?? 10;
    this.#countWritesPerSecond = options.countWritesPerSecond ?? 5_000;
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    this.#maxPendingFrames = options.maxPendingFrames ?? 10_000;
    this.#tickCostFactor = options.tickCostFactor ?? 2;
    this.#maxTickMs = options.maxTickMs ?? 100;
    this.#stormJoinsPerWindow = ((options.stormJoinsPerSecond ?? 200) * JOIN_WINDOW_MS) / 1000;
    this.#stormTickCostFactor = options.stormTickCostFactor ?? 4;
    this.#stormMaxTickMs = options.stormMaxTickMs ?? 250;
    this.#joinBatchMs = options.joinBatchMs ?? 100;
    this.#maxDeferrals = options.maxDeferrals ?? 4;
    this.#maxDeferralMs = options.maxDeferralMs ?? 10;
    this.#leaveDelayMs = options.leaveDelayMs ?? 1500;
    this.#now = options.now ?? Date.now;
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#guard = options.guard ?? new LoopGuard({ monotonic: this.#monotonic });
    this.#load = (
      options.loopLoad ??
      (options.loopUtilization
        ? new LoopLoad({ monotonic: this.#monotonic, loopUtilization: options.loopUtilization, timer: false })
        : processLoopLoad)
    ).reader();
  }

  get connectionCount(): number {
    return this.#connections;
  }

  /** Open connections of a user on this node, across rooms. */
  userConnectionCount(userId: string): number {
    return this.#byUser.get(userId) ?? 0;
  }

  /** Distinct users connected to a room on this node. */
  localViewers(sessionId: number): number {
    return this.#rooms.get(sessionId)?.users.size ?? 0;
  }

  localViewerIds(sessionId: number): string[] {
    return [...(this.#rooms.get(sessionId)?.users.keys() ?? [])];
  }

  roomIds(): number[] {
    return [...this.#rooms.keys()];
  }

  /**
   * Adds a connection to its room. Until `ready()` it receives nothing; events published meanwhile are kept so
   * that nothing between the history snapshot of `init` and the live stream is lost.
   */
  join(input: Omit<HubConnection, 'id'>): HubConnection {
    // Every field written here, in one order (no spread, no field added later): all connections then share one
    // hidden class. `{ ...input, … }` gave each its own (a map and descriptor array, ~270 bytes a socket).
    const conn: ConnState = {
      id: this.#nextId++,
      sessionId: input.sessionId,
      userId: input.userId,
      batch: input.batch,
      socket: input.socket,
      ready: false,
      pending: [],
      skipUpTo: undefined,
    };
    const room = this.#room(conn.sessionId);
    room.conns.add(conn);
    const now = this.#monotonic();
    const age = now - room.joinWindowStart;
    if (age >= JOIN_WINDOW_MS) {
      room.joinsLastWindow = age < 2 * JOIN_WINDOW_MS ? room.joinsThisWindow : 0;
      room.joinWindowStart = now;
      room.joinsThisWindow = 0;
    }
    room.joinsThisWindow++;
    this.#connections++;
    this.#byUser.set(conn.userId, (this.#byUser.get(conn.userId) ?? 0) + 1);
    const n = room.users.get(conn.userId) ?? 0;
    room.users.set(conn.userId, n + 1);
    if (n === 0) this.#presence(conn.sessionId, conn.userId, true);
    return conn;
  }

  /**
   * Sends `init` (built by the caller after `join`; a `resync_required` may precede it), then what was published
   * meanwhile, skipping messages with ids up to `lastMessageId` (already in `init`).
   */
  ready(
    handle: HubConnection,
    init: ServerEvent | string | Array<ServerEvent | string>,
    lastMessageId: number,
  ): void {
    const conn = handle as ConnState;
    const room = this.#rooms.get(conn.sessionId);
    if (!room?.conns.has(conn)) return;
    const needed = notIn(lastMessageId);
    // Events, or their JSON text already made (`init`, see src/chat/wire.ts).
    let initLength = 0;
    const frames: Frame[] = (Array.isArray(init) ? init : [init]).map((e) => {
      const json = typeof e === 'string' ? e : JSON.stringify(e);
      initLength += json.length;
      return { json };
    });
    for (const f of conn.pending) if (needed(f)) frames.push(f);
    // Never filled again once ready (frames then go straight out): one shared empty list, not one per socket.
    conn.pending = NO_FRAMES;
    conn.ready = true;
    // What is queued for the room goes to this connection with the next flush, like to everyone else; the part
    // of it that `init` holds must not reach it twice (issue 6: test/hardening/faults.test.ts H-FAULT-13). Not a
    // flush now: in a reconnect storm that would write every socket of the room once per resume.
    if (!room.outbox.every(needed)) conn.skipUpTo = lastMessageId;
    this.#write(conn, frames, undefined);
    conn.allowance = initLength;
  }

  leave(handle: HubConnection): void {
    const conn = handle as ConnState;
    const room = this.#rooms.get(conn.sessionId);
    if (!room?.conns.delete(conn)) return;
    this.#connections--;
    const byUser = (this.#byUser.get(conn.userId) ?? 1) - 1;
    if (byUser <= 0) this.#byUser.delete(conn.userId);
    else this.#byUser.set(conn.userId, byUser);
    const n = (room.users.get(conn.userId) ?? 1) - 1;
    if (n <= 0) {
      room.users.delete(conn.userId);
      this.#presence(conn.sessionId, conn.userId, false);
    } else {
      room.users.set(conn.userId, n);
    }
    if (room.conns.size === 0 && room.outbox.length === 0) this.#dropRoom(room);
  }

  /** Sends one event to one connection now (replies: errors, pong). */
  sendTo(handle: HubConnection, event: ServerEvent): void {
    const conn = handle as ConnState;
    const frame = { json: JSON.stringify(event) };
    if (!conn.ready) {
      conn.pending.push(frame);
      return;
    }
    this.#write(conn, [frame], undefined);
  }

  /** Queues an event for everyone in the room; it goes out at the end of this turn of the event loop. */
  publish(sessionId: number, event: ServerEvent, committedAt?: number): void {
    const room = this.#rooms.get(sessionId);
    if (!room || room.conns.size === 0) return;
    room.outbox.push({
      json: JSON.stringify(event),
      messageId: event.type === 'new_message' ? event.message.id : undefined,
    });
    if (committedAt !== undefined) room.committedAt.push(committedAt);
    this.#scheduleFlush(room);
  }

  setTotalLikes(sessionId: number, totalLikes: number): void {
    const room = this.#rooms.get(sessionId);
    if (!room || room.totalLikes === totalLikes) return;
    room.totalLikes = totalLikes;
    this.#scheduleCounts(room);
  }

  setViewerCount(sessionId: number, viewerCount: number): void {
    const room = this.#rooms.get(sessionId);
    if (!room || room.viewerCount === viewerCount) return;
    room.viewerCount = viewerCount;
    this.#scheduleCounts(room);
  }

  setMessageLikes(sessionId: number, messageId: number, likes: number): void {
    const room = this.#rooms.get(sessionId);
    if (!room) return;
    room.messageLikes.set(messageId, likes);
    this.#scheduleCounts(room);
  }

  /** Flushes the room, sends `event` to everyone in it and closes their sockets with `code`. */
  closeRoom(sessionId: number, event: ServerEvent | undefined, code: number, reason: string): void {
    const room = this.#rooms.get(sessionId);
    if (!room) return;
    this.#flush(room);
    for (const conn of [...room.conns]) {
      if (event && conn.ready) this.#write(conn, [{ json: JSON.stringify(event) }], undefined);
      conn.socket.close(code, reason);
      this.leave(conn);
    }
    this.#dropRoom(room);
    this.flushPresence();
  }

  /** Flushes every room and closes every socket (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const room of [...this.#rooms.values()]) this.closeRoom(room.sessionId, undefined, code, reason);
  }

  /** Reports the presence changes still held back (see `joinBatchMs`, `leaveDelayMs`) now. */
  flushPresence(): void {
    this.#reportPresence(Number.POSITIVE_INFINITY);
  }

  #reportPresence(upTo: number): void {
    if (this.#presenceTimer) clearTimeout(this.#presenceTimer);
    this.#presenceTimer = undefined;
    this.#presenceDue = Number.POSITIVE_INFINITY;
    const due: Array<{ sessionId: number; userId: string; active: boolean }> = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [key, p] of this.#presencePending) {
      if (p.due <= upTo) {
        due.push(p);
        this.#presencePending.delete(key);
      } else if (p.due < next) next = p.due;
    }
    if (next < Number.POSITIVE_INFINITY) this.#armPresence(next);
    for (const p of due) this.#options.onPresence?.(p.sessionId, p.userId, p.active);
  }

  #armPresence(due: number): void {
    if (due >= this.#presenceDue) return;
    if (this.#presenceTimer) clearTimeout(this.#presenceTimer);
    this.#presenceDue = due;
    this.#presenceTimer = setTimeout(
      () => this.#reportPresence(this.#monotonic() + 1),
      Math.max(0, due - this.#monotonic()),
    );
    this.#presenceTimer.unref();
  }

  #presence(sessionId: number, userId: string, active: boolean): void {
    const key = `${sessionId}\u0000${userId}`;
    const pending = this.#presencePending.get(key);
    if (pending && pending.active !== active) {
      // Back before the departure was reported (or gone before the arrival was): nothing changed.
      this.#presencePending.delete(key);
      return;
    }
    const now = this.#monotonic();
    let due: number;
    if (!active) {
      due = now + this.#leaveDelayMs;
    } else if (now >= this.#joinWindowEnd) {
      // The first arrival of a window goes at once and opens the window.
      this.#joinWindowEnd = now + this.#joinBatchMs;
      due = now;
    } else {
      due = this.#joinWindowEnd;
    }
    if (due <= now) {
      this.#options.onPresence?.(sessionId, userId, active);
      return;
    }
    this.#presencePending.set(key, { sessionId, userId, active, due });
    this.#armPresence(due);
  }

  #room(sessionId: number): Room {
    let room = this.#rooms.get(sessionId);
    if (!room) {
      room = {
        sessionId,
        conns: new Set(),
        users: new Map(),
        outbox: [],
        flushScheduled: false,
        flushTimer: undefined,
        lastFlushStart: 0,
        flushCostMs: 0,
        totalLikes: undefined,
        viewerCount: undefined,
        messageLikes: new Map(),
        countTimer: undefined,
        lastCountFlush: Number.NEGATIVE_INFINITY,
        committedAt: [],
        joinWindowStart: Number.NEGATIVE_INFINITY,
        joinsThisWindow: 0,
        joinsLastWindow: 0,
      };
      this.#rooms.set(sessionId, room);
    }
    return room;
  }

  #dropRoom(room: Room): void {
    this.#guard.cancel(room.countTimer);
    room.countTimer = undefined;
    this.#guard.cancel(room.flushTimer);
    room.flushTimer = undefined;
    room.flushScheduled = false;
    room.outbox = [];
    if (this.#rooms.get(room.sessionId) === room) this.#rooms.delete(room.sessionId);
  }

  /** Is the room filling fast, as in a reconnect storm (see `stormJoinsPerSecond`)? */
  isFilling(sessionId: number): boolean {
    const room = this.#rooms.get(sessionId);
    return room !== undefined && this.#filling(room);
  }

  #filling(room: Room): boolean {
    const age = this.#monotonic() - room.joinWindowStart;
    const threshold = this.#stormJoinsPerWindow;
    if (age >= 2 * JOIN_WINDOW_MS) return false;
    // The window has ended: it is the previous one now.
    if (age >= JOIN_WINDOW_MS) return room.joinsThisWindow >= threshold;
    return room.joinsThisWindow >= threshold || room.joinsLastWindow >= threshold;
  }

  /**
   * The factor on busy rooms' gaps between ticks now (1: the usual pace), with every window of the loop's load
   * ended since it was last read (the `drawchat_tick_spacing_factor` gauge reads it at each scrape).
   */
  get tickSpacing(): number {
    return this.#readLoad();
  }

  /** The current `#stretch`, stepped once for each window of the loop's load ended since the last read. */
  #readLoad(): number {
    const { windows, fresh } = this.#load.read();
    if (windows.length === 0) return this.#stretch;
    // Windows not kept since the last read: the run of saturated ones is counted afresh.
    if (fresh) this.#saturatedWindows = 0;
    const most = Math.max(1, this.#stormMaxTickMs / this.#maxTickMs);
    const before = this.#stretch;
    for (const { saturated } of windows) {
      this.#saturatedWindows = saturated ? this.#saturatedWindows + 1 : 0;
      if (this.#saturatedWindows >= SUSTAINED_WINDOWS)
        this.#stretch = Math.min(most, this.#stretch * STRETCH_STEP);
      else if (this.#saturatedWindows === 0) this.#stretch = Math.max(1, this.#stretch / STRETCH_STEP);
    }
    if (this.#stretch !== before) this.#options.onTickSpacing?.(this.#stretch);
    return this.#stretch;
  }

  #scheduleFlush(room: Room): void {
    if (room.flushScheduled) return;
    room.flushScheduled = true;
    const stretch = this.#readLoad();
    const gap = this.#filling(room)
      ? Math.min(this.#stormMaxTickMs, room.flushCostMs * this.#stormTickCostFactor)
      : // `#readLoad` keeps `maxTickMs × stretch` within `stormMaxTickMs` (and never under `maxTickMs`).
        stretch * Math.min(this.#maxTickMs, room.flushCostMs * this.#tickCostFactor);
    const wait = room.lastFlushStart + gap - this.#monotonic();
    if (wait < 1) {
      if (gap < 1) this.#guard.immediate(() => this.#flush(room), LONG_TURN_MS);
      // A busy room whose tick is already due (its ticks run back to back): not at once, but after the commits of
      // what was read meanwhile (see #overdueFlush). At once, those ran right after the tick and their messages
      // waited a whole tick more on the server.
      // Its deferrals are counted from when it first runs, as they always were: from when it was scheduled, a
      // long poll phase before it used them up, and the tick left without the commit of what that phase read.
      else this.#guard.immediate(() => this.#overdueFlush(room, this.#monotonic(), 0), LONG_TURN_MS);
      return;
    }
    room.flushTimer = this.#guard.timeout(() => this.#flush(room), wait);
  }

  /**
   * An overdue tick of a busy room, called a turn of the event loop after it was due: one turn later, and then,
   * while `pendingWork` says that work queued in that turn will publish (the group commit of frames just read),
   * one more turn at a time, at most `maxDeferrals` turns and `maxDeferralMs` in all. A message read while the
   * commit before a tick ran used to miss that tick and wait for the next (100 ms in a big room); now only what
   * arrives during the last, shorter commit does.
   */
  #overdueFlush(room: Room, since: number, turns: number): void {
    if (
      turns === 0 ||
      (turns < this.#maxDeferrals &&
        this.#options.pendingWork?.() === true &&
        this.#monotonic() - since < this.#maxDeferralMs)
    ) {
      // In a long poll phase (see LoopGuard), the next poke after the deferral's time is up.
      this.#guard.immediate(
        () => this.#overdueFlush(room, since, turns + 1),
        since + this.#maxDeferralMs - this.#monotonic(),
      );
      return;
    }
    this.#flush(room);
  }

  #scheduleCounts(room: Room): void {
    if (room.countTimer) return;
    const interval = Math.max(
      this.#countIntervalMs,
      room.flushCostMs * this.#countCostFactor,
      Math.min(MAX_COUNT_BUDGET_INTERVAL_MS, (room.conns.size * 1000) / this.#countWritesPerSecond),
    );
    const wait = Math.max(0, room.lastCountFlush + interval - this.#monotonic());
    room.countTimer = this.#guard.timeout(() => {
      room.countTimer = undefined;
      room.lastCountFlush = this.#monotonic();
      this.#queueCounts(room);
      this.#scheduleFlush(room);
    }, wait);
  }

  #queueCounts(room: Room): void {
    const push = (event: ServerEvent) => room.outbox.push({ json: JSON.stringify(event) });
    if (room.viewerCount !== undefined) {
      push({ type: 'viewer_count_update', session_id: room.sessionId, viewer_count: room.viewerCount });
    }
    if (room.totalLikes !== undefined) {
      push({ type: 'session_like_update', session_id: room.sessionId, total_likes: room.totalLikes });
    }
    for (const [messageId, likes] of room.messageLikes) {
      push({ type: 'message_like_update', message_id: messageId, likes });
    }
    room.viewerCount = undefined;
    room.totalLikes = undefined;
    room.messageLikes.clear();
  }

  #flush(room: Room): void {
    room.flushScheduled = false;
    this.#guard.cancel(room.flushTimer);
    room.flushTimer = undefined;
    if (room.outbox.length === 0) return;
    const started = this.#monotonic();
    const frames = room.outbox;
    room.outbox = [];
    const committed = room.committedAt;
    room.committedAt = [];
    let batchFrame: string | undefined;
    for (const conn of room.conns) {
      if (!conn.ready) {
        for (const f of frames) conn.pending.push(f);
        if (conn.pending.length > this.#maxPendingFrames) this.#cutOff(conn);
        continue;
      }
      if (conn.skipUpTo !== undefined) {
        const rest = frames.filter(notIn(conn.skipUpTo));
        conn.skipUpTo = undefined;
        if (rest.length > 0) this.#write(conn, rest, undefined);
        continue;
      }
      if (conn.batch) batchFrame ??= `[${frames.map((f) => f.json).join(',')}]`;
      this.#write(conn, frames, batchFrame);
    }
    room.lastFlushStart = started;
    room.flushCostMs = this.#monotonic() - started;
    if (committed.length > 0 && this.#options.onDeliveryLatency) {
      const now = this.#now();
      for (const t of committed) this.#options.onDeliveryLatency(now - t);
    }
    if (room.conns.size === 0) this.#dropRoom(room);
  }

  #write(conn: ConnState, frames: Frame[], batchFrame: string | undefined): void {
    const socket = conn.socket;
    if (!socket.isOpen) return;
    const buffered = socket.bufferedAmount;
    if (buffered > this.#maxBufferedBytes + (conn.allowance ?? 0)) {
      this.#cutOff(conn);
      return;
    }
    if (buffered <= this.#maxBufferedBytes) conn.allowance = undefined;
    if (conn.batch) {
      socket.send(batchFrame ?? `[${frames.map((f) => f.json).join(',')}]`);
      return;
    }
    if (frames.length === 1) {
      socket.send(frames[0]!.json);
      return;
    }
    socket.cork();
    try {
      for (const f of frames) socket.send(f.json);
    } finally {
      socket.uncork();
    }
  }

  #cutOff(conn: ConnState): void {
    this.#options.onSlowConsumer?.(conn);
    conn.socket.close(CloseCode.SLOW_CONSUMER, 'slow consumer: reconnect with since');
    this.leave(conn);
  }
}

import { CloseCode } from '../../src/protocol/close-codes.js';
import type { ServerEvent } from '../../src/protocol/messages.js';
import type { HubSocket } from '../../src/realtime/socket.js';

/** One serialised event, shared by every recipient of a tick. */
interface Frame {
  json: string;
  /** For `new_message`: lets a connection that is still initialising drop what its `init` already holds. */
  messageId?: number;
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
}

interface Room {
  readonly sessionId: number;
  readonly conns: Set<ConnState>;
  /** userId → open connections of that user in this room on this node. */
  readonly users: Map<string, number>;
  outbox: Frame[];
  flushScheduled: boolean;
  /** Latest values of coalesced counters, sent at most every `countIntervalMs`. */
  totalLikes: number | undefined;
  viewerCount: number | undefined;
  readonly messageLikes: Map<number, number>;
  countTimer: NodeJS.Timeout | undefined;
  lastCountFlush: number;
  /** Commit times of the messages in the outbox, for the commit-to-send latency metric. */
  committedAt: number[];
}

export interface HubOptions {
  /** Minimum time between two count updates in one room (viewers, hearts, message likes). */
  countIntervalMs?: number;
  /** A socket with more than this many bytes queued is cut off with 4408 (it can resume with `since`). */
  maxBufferedBytes?: number;
  /** A connection still initialising may hold this many frames before it is cut off. */
  maxPendingFrames?: number;
  /** Presence: first connection of a user in a room (`active`), last one gone (`!active`). */
  onPresence?: (sessionId: number, userId: string, active: boolean) => void;
  /** Called once per delivered message with the time from commit to the socket write, in ms. */
  onDeliveryLatency?: (ms: number) => void;
  onSlowConsumer?: (conn: HubConnection) => void;
  now?: () => number;
}

/**
 * Rooms and fan-out. Events published during one turn of the event loop are serialised once and written to
 * each socket once: one array frame for `batch=1` clients, corked single frames for the others. Counts are
 * state, not events: only the latest value goes out, at most every `countIntervalMs`.
 */
export class Hub {
  readonly #rooms = new Map<number, Room>();
  readonly #byUser = new Map<string, number>();
  readonly #countIntervalMs: number;
  readonly #maxBufferedBytes: number;
  readonly #maxPendingFrames: number;
  readonly #options: HubOptions;
  readonly #now: () => number;
  #nextId = 1;
  #connections = 0;

  constructor(options: HubOptions = {}) {
    this.#options = options;
    this.#countIntervalMs = options.countIntervalMs ?? 250;
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    this.#maxPendingFrames = options.maxPendingFrames ?? 10_000;
    this.#now = options.now ?? Date.now;
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
    const conn: ConnState = { ...input, id: this.#nextId++, ready: false, pending: [] };
    const room = this.#room(conn.sessionId);
    room.conns.add(conn);
    this.#connections++;
    this.#byUser.set(conn.userId, (this.#byUser.get(conn.userId) ?? 0) + 1);
    const n = room.users.get(conn.userId) ?? 0;
    room.users.set(conn.userId, n + 1);
    if (n === 0) this.#options.onPresence?.(conn.sessionId, conn.userId, true);
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
    if (!this.#rooms.get(conn.sessionId)?.conns.has(conn)) return;
    // The one change to this copy: `init` may come as JSON text, as the service now makes it (src/chat/wire.ts).
    const frames: Frame[] = (Array.isArray(init) ? init : [init]).map((e) => ({
      json: typeof e === 'string' ? e : JSON.stringify(e),
    }));
    for (const f of conn.pending) {
      if (f.messageId === undefined || f.messageId > lastMessageId) frames.push(f);
    }
    conn.pending = [];
    conn.ready = true;
    this.#write(conn, frames, undefined);
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
      this.#options.onPresence?.(conn.sessionId, conn.userId, false);
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
  }

  /** Flushes every room and closes every socket (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const room of [...this.#rooms.values()]) this.closeRoom(room.sessionId, undefined, code, reason);
  }

  /** Sends whatever is queued right now, without waiting for the end of the tick. */
  flushAll(): void {
    for (const room of this.#rooms.values()) this.#flush(room);
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
        totalLikes: undefined,
        viewerCount: undefined,
        messageLikes: new Map(),
        countTimer: undefined,
        lastCountFlush: 0,
        committedAt: [],
      };
      this.#rooms.set(sessionId, room);
    }
    return room;
  }

  #dropRoom(room: Room): void {
    if (room.countTimer) clearTimeout(room.countTimer);
    room.countTimer = undefined;
    room.outbox = [];
    if (this.#rooms.get(room.sessionId) === room) this.#rooms.delete(room.sessionId);
  }

  #scheduleFlush(room: Room): void {
    if (room.flushScheduled) return;
    room.flushScheduled = true;
    setImmediate(() => this.#flush(room));
  }

  #scheduleCounts(room: Room): void {
    if (room.countTimer) return;
    const wait = Math.max(0, room.lastCountFlush + this.#countIntervalMs - this.#now());
    room.countTimer = setTimeout(() => {
      room.countTimer = undefined;
      room.lastCountFlush = this.#now();
      this.#queueCounts(room);
      this.#flush(room);
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
    if (room.outbox.length === 0) return;
    const frames = room.outbox;
    room.outbox = [];
    const committed = room.committedAt;
    room.committedAt = [];
    let batchFrame: string | undefined;
    for (const conn of room.conns) {
      if (!conn.ready) {
        conn.pending.push(...frames);
        if (conn.pending.length > this.#maxPendingFrames) this.#cutOff(conn);
        continue;
      }
      if (conn.batch) batchFrame ??= `[${frames.map((f) => f.json).join(',')}]`;
      this.#write(conn, frames, batchFrame);
    }
    if (committed.length > 0 && this.#options.onDeliveryLatency) {
      const now = this.#now();
      for (const t of committed) this.#options.onDeliveryLatency(now - t);
    }
    if (room.conns.size === 0) this.#dropRoom(room);
  }

  #write(conn: ConnState, frames: Frame[], batchFrame: string | undefined): void {
    const socket = conn.socket;
    if (!socket.isOpen) return;
    if (socket.bufferedAmount > this.#maxBufferedBytes) {
      this.#cutOff(conn);
      return;
    }
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

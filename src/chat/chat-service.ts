import type { Settings } from '../config/settings.js';
import type { Clock } from '../domain/clock.js';
import { normalizeMessageText } from '../domain/message-text.js';
import type { Decision } from '../domain/rate-limit.js';
import type { DrawSchedule, DrawWindow } from '../domain/schedule.js';
import type { Metrics } from '../observability/metrics.js';
import { CloseCode } from '../protocol/close-codes.js';
import { ChatError } from '../protocol/errors.js';
import type { HistoryResponse, StatusResponse } from '../protocol/http.js';
import { type ChatMessage, MAX_RESUME_MESSAGES, type SessionInfo, type You } from '../protocol/messages.js';

export type ResyncReason = 'epoch_changed' | 'too_far_behind' | 'unknown_position';

import type { Bus, BusEvent } from '../realtime/bus.js';
import { Hub } from '../realtime/hub.js';
import { type Limits, LocalLimits } from '../realtime/limits.js';
import { LONG_TURN_MS, LoopGuard, type LoopTask } from '../realtime/loop-guard.js';
import { LocalPresence, type LocalViewers, type Presence } from '../realtime/presence.js';
import { Sequencer } from '../realtime/sequencer.js';
import type {
  ChatStore,
  SessionRecord,
  StoredMessage,
  UserClaimsInput,
  UserPreview,
  UserRecord,
  WriteBatch,
  WriteBatchResult,
} from '../store/types.js';
import { CommitQueue } from './commit-queue.js';
import { toWireMessage, toWireSession, wireMessagesJson } from './wire.js';

/** The person behind a request or socket, after their token was checked and their profile resolved. */
export interface ChatUser {
  userId: string;
  username: string;
  profilePic: string | null;
  isHost: boolean;
  /**
   * The token claims it was resolved from, and how many profile changes this node had seen then: a socket holds
   * its user for hours, and `sendMessage` resolves it again from them when the draw backend changed this user's
   * profile since, so that the new profile names the next message.
   */
  identity?: IdentityInput;
  edits?: number;
}

/** What identity the auth layer hands over; matches `AuthIdentity` of src/http/auth. */
export interface IdentityInput {
  userId: string;
  claimName: string | null;
  claimPicture: string | null;
  fallbackName: string;
  isHost: boolean;
}

export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface ChatServiceDeps {
  settings: Settings;
  store: ChatStore;
  clock: Clock;
  schedule: DrawSchedule;
  bus: Bus;
  metrics: Metrics;
  log: Log;
  /** Per-user limits; default: this node's memory. */
  limits?: Limits;
  /** Viewer counting; default: this node's rooms. `ring` tells the other nodes to recount. */
  createPresence?: (local: LocalViewers, ring: (sessionId: number) => void) => Presence;
  /** See `USER_READ_WINDOW_MS` (tests lengthen it). */
  userReadWindowMs?: number;
  /** Slack of this node's heart and like limits (default: this process's read lag; tests pin it). */
  readLagMs?: () => number;
}

/** Messages of the active session kept in memory: `init`, resume and recent history are served from here. */
const RECENT_LIMIT = 2000;
/** With a shared bus, how often each node reads the database for messages whose publish it may have missed. */
const SAFETY_POLL_MS = 2_000;
/** A window refresh that failed (the database away) is tried again this soon. */
const REFRESH_RETRY_MS = 2_000;
/** With a shared bus, how often viewer rows are checked against who is really connected (dead nodes). */
const VIEWER_RECONCILE_MS = 30_000;
/** Viewer rows of a session count as left behind this long after its window ended (nodes' clocks differ a little). */
const ENDED_VIEWERS_GRACE_MS = 30_000;
/**
 * With several nodes, at a window's end: how long a node waits for the others' last commits before it reads what
 * it has not delivered yet, and how long that read may take, before `chat_closed`.
 */
const WINDOW_END_GRACE_MS = 250;
const WINDOW_END_CATCH_UP_MS = 2_000;
/** Every 30 s, sessions that ended this long before are looked at (at start, all of them). */
const ENDED_VIEWERS_LOOKBACK_MS = 24 * 60 * 60_000;
/** Profiles resolved from a token are reused this long before the users table is touched again. */
const USER_CACHE_MS = 60_000;
/**
 * After that, a returning user with the same claims is still answered from the cache for this long, while the
 * profile is read again in the background (`#refreshUsers`): a reconnect storm minutes into a draw then costs no
 * read per comeback on the handshake path (on SQLite those reads went one per turn of the event loop, one
 * statement each).
 */
const USER_STALE_MS = 10 * 60_000;
/** Profile changes remembered for reads that were out when they landed (see `resolveUser`). */
const PROFILE_EDITS_KEPT = 10_000;
/** Expired profiles asked for meanwhile are read again together, this long after the first of them. */
const USER_REFRESH_DELAY_MS = 1_000;
/**
 * A new user's profile is read at the end of the turn of the event loop that asked for it, together with the
 * others of that turn; unless the previous read went less than this long ago: then it waits for the rest of
 * this window and goes with every read asked for meanwhile. A loaded server takes about one handshake per turn,
 * so reading each turn's was one statement per handshake (4,697 statements for 5,000 new viewers); a few ms of a
 * handshake buy a statement for a dozen of them, and a quiet server still reads at once.
 */
const USER_READ_WINDOW_MS = 2;

interface ActiveSession {
  readonly record: SessionRecord;
  winners: Set<string>;
  /** `winners` events applied: a re-read from the database begun before one of them is older than it. */
  winnerEvents: number;
  /** The write_seq of the winners list applied last (see the 'winners' bus event). */
  winnersVersion: number;
  /** Ascending ids, at most RECENT_LIMIT. */
  recent: StoredMessage[];
  /** True when `recent` holds every message of the session (nothing older exists). */
  recentComplete: boolean;
  byClientId: Map<string, StoredMessage>;
  /**
   * Messages with a `client_msg_id` on their way to the database, by `clientKey`: a retry sent while its original
   * is still committing waits for it, instead of being refused by the rate limit the original used up.
   */
  sending: Map<string, Promise<StoredMessage | undefined>>;
  totalLikes: number;
  /** Write version of the last count applied: counts from several nodes may arrive out of order. */
  likesVersion: number;
  messageLikeVersions: Map<number, number>;
  /** Ids of deleted messages, the highest `REPLAYED_DELETIONS` (ascending): replayed to resuming sockets. */
  deleted: number[];
}

/**
 * How many deletions (of the newest messages) a resume replays as `message_deleted` after `init`, although their
 * ids are at or below `since`: a viewer away while a host removed a message they had seen must not keep showing it.
 */
export const REPLAYED_DELETIONS = 100;

function rememberDeletion(session: ActiveSession, messageId: number): void {
  const { deleted } = session;
  if (deleted.includes(messageId)) return;
  // Kept in id order: deletions of older messages may come later (the bus does not order them).
  let at = deleted.length;
  while (at > 0 && deleted[at - 1]! > messageId) at--;
  deleted.splice(at, 0, messageId);
  if (deleted.length > REPLAYED_DELETIONS) deleted.shift();
}

/**
 * A deleted message leaves `byClientId` with `recent` (as `#remember` drops the keys of messages it trims): a retry
 * of it is then answered from the database (deleted: refused), not with the message from memory.
 */
function forgetClientKey(session: ActiveSession, m: StoredMessage): void {
  if (m.clientMsgId) session.byClientId.delete(clientKey(m.userId, m.clientMsgId));
}

/**
 * A retry (same `client_msg_id`) of a message a HOST deleted meanwhile: refused, so that the message does not come
 * back on its author's screen (the client library resends what it had pending after a reconnect).
 */
function refuseDeleted(original: StoredMessage): void {
  if (original.deleted)
    throw new ChatError(
      'not_found',
      `Message ${original.id} was deleted by a moderator; it is not sent again.`,
    );
}

/** Throws the `rate_limited` answer of a refused heart. */
function allowHeart(decision: Decision): void {
  if (!decision.ok) {
    throw new ChatError('rate_limited', 'Too many hearts; slow down a little.', {
      retryAfterMs: decision.retryAfterMs,
    });
  }
}

export class ChatService {
  readonly hub: Hub;
  /**
   * Deferred work of the hub, the group commit and the profile reads; the server pokes it at the start of every
   * frame, handshake and request, so a long poll phase does not hold that work back (see `LoopGuard`).
   */
  readonly loop: LoopGuard;
  readonly #deps: ChatServiceDeps;
  readonly #queue: CommitQueue;
  readonly limits: Limits;
  readonly #presence: Presence;
  readonly #sequencer: Sequencer;
  /** userId → the user as resolved from these claims, until `until` (one entry per connected user). */
  readonly #users = new Map<string, { user: ResolvedUser; until: number }>();
  /** Profile changes seen (`#profileChanged`), and the count at each user's latest, oldest first. */
  #profileEdits = 0;
  readonly #editedAt = new Map<string, number>();
  /** Profile reads waiting for the next batch (see `#previewUser`), its timer, and when the last batch went. */
  #userReads: UserRead[] | undefined;
  #userReadTimer: LoopTask | undefined;
  #lastUserRead = Number.NEGATIVE_INFINITY;
  /** The batch read in flight (awaited by `stop`). */
  #readingUsers: Promise<void> | undefined;
  readonly #userReadWindowMs: number;
  /** Users answered from an expired cache entry, to read again (see `USER_STALE_MS`). */
  readonly #staleUsers = new Set<string>();
  #staleTimer: NodeJS.Timeout | undefined;
  /** The background read of `#staleUsers` in flight, if any (awaited by `stop`, before the queue closes). */
  #refreshingUsers: Promise<void> | undefined;
  #active: ActiveSession | null = null;
  /** While closed: the instant the next window opens (null: none scheduled); avoids recomputing per call. */
  #closedUntil: number | null | undefined;
  /** The session this node last marked `is_active` in the database (null: none); undefined until it has. */
  #flagged: number | null | undefined;
  #refreshing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #poller: NodeJS.Timeout | undefined;
  #reconciler: NodeJS.Timeout | undefined;
  #unsubscribeClock: (() => void) | undefined;
  #stopped = false;
  #epoch = '';
  /** Presence checks in flight; stop() lets them write their rows. */
  readonly #presenceChecks = new Set<Promise<void>>();

  constructor(deps: ChatServiceDeps) {
    this.#deps = deps;
    this.#userReadWindowMs = deps.userReadWindowMs ?? USER_READ_WINDOW_MS;
    const { clock, settings, metrics } = deps;
    this.loop = new LoopGuard({ onError: (err) => deps.log.error({ err }, 'deferred work failed') });
    this.hub = new Hub({
      guard: this.loop,
      onPresence: (sessionId, userId, active) => this.#onPresence(sessionId, userId, active),
      onDeliveryLatency: (ms) => metrics.deliveryLatency.observe(ms / 1000),
      // An overdue tick waits for a commit already queued (see HubOptions.pendingWork); #queue is made below and
      // only read when a tick runs.
      pendingWork: () => this.#queue.busy,
      onSlowConsumer: (conn) => {
        metrics.slowConsumers.inc();
        deps.log.warn({ conn: conn.id, user: conn.userId, session: conn.sessionId }, 'slow consumer cut off');
      },
    });
    this.#queue = new CommitQueue(
      deps.store,
      (batch, result, at) => this.#onCommitted(batch, result, at),
      (err, batch) =>
        deps.log.error(
          {
            err,
            messages: batch.messages.length,
            hearts: batch.hearts.length,
            likes: batch.messageLikes.length,
          },
          'group commit failed',
        ),
      {
        now: () => clock.now(),
        onTiming: (ms, items) => {
          metrics.commitDuration.observe(ms / 1000);
          metrics.commitBatchSize.observe(items);
        },
        guard: this.loop,
      },
    );
    this.limits =
      deps.limits ??
      new LocalLimits(
        {
          messagesPerMinute: settings.maxMessagesPerMinute,
          maxConnectionsPerUser: settings.maxConnectionsPerUser,
        },
        clock,
        deps.readLagMs,
      );
    const local: LocalViewers = {
      sessions: () => this.hub.roomIds(),
      users: (sessionId) => this.hub.localViewerIds(sessionId),
      count: (sessionId) => this.hub.localViewers(sessionId),
    };
    const ring = (sessionId: number) => deps.bus.publish([{ kind: 'presence', sessionId }]);
    this.#presence = deps.createPresence?.(local, ring) ?? new LocalPresence(local);
    this.#presence.onCount((sessionId, count) => {
      metrics.viewers.set({ session_id: String(sessionId) }, count);
      this.hub.setViewerCount(sessionId, count);
    });
    this.#sequencer = new Sequencer({
      fetchAfter: (sessionId, afterId, pageSize) => deps.store.messagesAfter(sessionId, afterId, pageSize),
      deliver: (sessionId, message, committedAt) => this.#deliverMessage(sessionId, message, committedAt),
      onGapFill: (sessionId, n) => {
        metrics.gapFills.inc(n);
        deps.log.debug({ session: sessionId, messages: n }, 'filled a gap from the database');
      },
      onError: (err) => deps.log.warn({ err }, 'reading a gap from the database failed; retrying'),
    });
    deps.bus.subscribe((events) => this.#onBus(events));
    deps.bus.onReconnect(() => {
      void this.#sequencer.catchUpAll();
      void this.resyncState();
    });
  }

  get settings(): Settings {
    return this.#deps.settings;
  }

  /** The history this database holds (SPEC: resume across a recreated database is refused). */
  get epoch(): string {
    return this.#epoch;
  }

  async start(): Promise<void> {
    this.#epoch = await this.#deps.store.epoch();
    // Alone, nobody can be connected at start-up; with other nodes running, their viewers are real.
    if (!this.#deps.bus.shared) await this.#deps.store.resetViewers();
    this.#unsubscribeClock = this.#deps.clock.onJump?.(() => void this.refresh());
    this.#sweeper = setInterval(() => {
      const now = this.#deps.clock.now();
      for (const [id, u] of this.#users) if (u.until + USER_STALE_MS < now) this.#users.delete(id);
    }, 30_000);
    this.#sweeper.unref();
    if (this.#deps.bus.shared) {
      // Redis pub/sub is a doorbell: a lost publish with nothing after it shows no gap, so look now and then.
      this.#poller = setInterval(() => void this.#sequencer.catchUpAll(), SAFETY_POLL_MS);
      this.#poller.unref();
      this.#reconciler = setInterval(() => {
        void this.reconcileViewers();
        void this.resyncState();
      }, VIEWER_RECONCILE_MS);
      this.#reconciler.unref();
    }
    await this.refresh();
    // With other nodes running, rows left behind by nodes that died (all of them, after a window ended) are
    // found now, not only at the first interval.
    if (this.#deps.bus.shared) await this.reconcileViewers({ all: true });
  }

  /** Stops timers and commits what is queued. Sockets are closed by the transport before this. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribeClock?.();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#sweeper) clearInterval(this.#sweeper);
    if (this.#staleTimer) clearTimeout(this.#staleTimer);
    if (this.#poller) clearInterval(this.#poller);
    if (this.#reconciler) clearInterval(this.#reconciler);
    await this.#refreshing;
    // Reads waiting for their window go now, before the store closes.
    this.#readUsers();
    await this.#readingUsers;
    await this.#refreshingUsers;
    await Promise.all(this.#presenceChecks);
    const dropped = await this.#queue.close();
    if (dropped.hearts + dropped.viewers + dropped.users > 0) {
      // The database stayed away to the end: what an outage carried over is lost with the process.
      this.#deps.log.warn(
        dropped,
        'stopping with writes the database never took (hearts, viewer rows, user rows)',
      );
    }
    await this.#presence.close();
    await this.limits.close();
  }

  // ------------------------------------------------------------------ sessions and windows

  /** Re-reads the schedule at the clock's current instant: opens or closes the session window. */
  refresh(): Promise<void> {
    const next = (this.#refreshing ?? Promise.resolve()).then(() => this.#refreshNow());
    const tracked = next.catch((err) => this.#deps.log.error({ err }, 'session refresh failed'));
    this.#refreshing = tracked.finally(() => {
      if (this.#refreshing === tracked) this.#refreshing = undefined;
    });
    return next;
  }

  async #refreshNow(): Promise<void> {
    if (this.#stopped) return;
    let done = false;
    try {
      await this.#refreshWindow();
      done = true;
    } finally {
      // Also after a failure (the database away as a window opens): the next try is armed, soon.
      this.#arm(this.#deps.clock.now(), done ? undefined : REFRESH_RETRY_MS);
    }
  }

  async #refreshWindow(): Promise<void> {
    const { clock, settings, schedule, store } = this.#deps;
    const now = clock.now();
    const window = settings.enabled ? schedule.windowAt(now) : null;
    const active = this.#active;
    if (active && (!window || window.drawTime !== active.record.drawTime)) {
      // What was accepted before the end is committed and sent first, so its senders have their answer before
      // `chat_closed` (a batch that fails answers its own senders). Meanwhile new writes wait for this refresh
      // (`activeSession`), which closes the session for them.
      await this.#queue.drain().catch(() => undefined);
      if (this.#deps.bus.shared) {
        // Other nodes end the window too and commit what they had accepted: their last messages, and those of
        // ours held behind one of theirs, reach this node's viewers before `chat_closed`.
        await new Promise((resolve) => setTimeout(resolve, WINDOW_END_GRACE_MS));
        await this.#sequencer.finish(active.record.id, WINDOW_END_CATCH_UP_MS);
      }
      this.#active = null;
      const reason = settings.enabled ? 'window_ended' : 'disabled';
      this.hub.closeRoom(
        active.record.id,
        { type: 'chat_closed', session_id: active.record.id, reason },
        CloseCode.CHAT_CLOSED,
        'chat closed',
      );
      this.#deps.metrics.viewers.remove({ session_id: String(active.record.id) });
      this.#sequencer.close(active.record.id);
      this.#deps.bus.leaveSession(active.record.id);
      this.#deps.log.info({ session: active.record.id }, 'chat window closed');
    }
    if (window && !this.#active) {
      const session = await this.#activate(window);
      this.#active = session;
      this.#deps.bus.joinSession(session.record.id);
      this.#sequencer.open(session.record.id, session.recent.at(-1)?.id ?? 0);
      // Whatever was committed between the history read and the subscription.
      if (this.#deps.bus.shared) void this.#sequencer.catchUp(session.record.id);
      this.#deps.log.info(
        { session: this.#active.record.id, draw_time: new Date(window.drawTime).toISOString() },
        'chat window open',
      );
    }
    this.#closedUntil = this.#active ? undefined : (schedule.nextWindow(now)?.startsAt ?? null);
    // `is_active` in the database (SPEC §8's monitoring reads it): written until it took, and once at start-up,
    // which also clears a flag a crash left on a session whose window has ended since.
    const flag = this.#active?.record.id ?? null;
    if (this.#flagged !== flag) {
      await store.setActiveSession(flag);
      this.#flagged = flag;
    }
  }

  async #activate(window: DrawWindow): Promise<ActiveSession> {
    const { store } = this.#deps;
    const record = await store.ensureSession(window);
    const [winners, page] = await Promise.all([
      store.getWinners(record.id),
      store.listMessages(record.id, { limit: RECENT_LIMIT }),
    ]);
    // Deletions among the recent messages (those a resume can be about) made before this node started.
    const deleted = await store.deletedMessageIds(
      record.id,
      page.hasMore ? (page.messages[0]?.id ?? 0) : 0,
      REPLAYED_DELETIONS,
    );
    const session: ActiveSession = {
      record,
      winners: new Set(winners),
      winnerEvents: 0,
      winnersVersion: 0,
      recent: page.messages,
      recentComplete: !page.hasMore,
      byClientId: new Map(),
      sending: new Map(),
      totalLikes: record.totalLikes,
      likesVersion: 0,
      messageLikeVersions: new Map(),
      deleted,
    };
    for (const m of page.messages)
      if (m.clientMsgId) session.byClientId.set(clientKey(m.userId, m.clientMsgId), m);
    return session;
  }

  #arm(now: number, retryMs?: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#stopped) return;
    const boundary = this.#active ? this.#active.record.endsAt : this.#closedUntil;
    // Re-read the schedule at least every minute: timers drift and the clock may be adjusted.
    const delay = Math.min(
      boundary == null ? 60_000 : Math.min(Math.max(boundary - now, 0), 60_000),
      retryMs ?? Number.POSITIVE_INFINITY,
    );
    this.#timer = setTimeout(() => void this.refresh(), delay);
    this.#timer.unref();
  }

  /** The active session as cached, if it is still within its window now; no I/O. */
  #activeNow(): ActiveSession | undefined {
    const now = this.#deps.clock.now();
    const a = this.#active;
    return a && now >= a.record.startsAt && now < a.record.endsAt && this.#deps.settings.enabled
      ? a
      : undefined;
  }

  /** The session whose window is open now, or null. Always agrees with the clock, timers or not. */
  async activeSession(): Promise<ActiveSession | null> {
    const cached = this.#activeNow();
    if (cached) return cached;
    const now = this.#deps.clock.now();
    const a = this.#active;
    if (!a && this.#closedUntil !== undefined && (this.#closedUntil === null || now < this.#closedUntil)) {
      return null;
    }
    await this.refresh();
    return this.#active;
  }

  /**
   * Keeps `live_chat_viewers` truthful for the monitoring query `SELECT COUNT(*) FROM live_chat_viewers WHERE
   * is_active = true` on several nodes (a single node marks every row inactive at start and writes each change
   * itself): rows of sessions whose window ended are made inactive (a node killed before it closed its sockets
   * left them, and nobody can be watching a closed session), and in the active session each row follows whether
   * a live node has the user connected (Redis presence), both ways (a write lost in an outage, or two nodes'
   * writes committed out of order). Runs at start (every ended session: `all`) and every `VIEWER_RECONCILE_MS`
   * (sessions that ended in the last day); returns the rows corrected.
   */
  async reconcileViewers(options: { all?: boolean } = {}): Promise<number> {
    const now = this.#deps.clock.now();
    const endedBy = now - ENDED_VIEWERS_GRACE_MS;
    const ended = await this.#deps.store
      .endViewersOfEndedSessions(endedBy, now, options.all ? undefined : endedBy - ENDED_VIEWERS_LOOKBACK_MS)
      .catch(() => 0);
    const active = this.#active;
    if (!active) return ended;
    const sessionId = active.record.id;
    const [connected, rows] = await Promise.all([
      this.#presence.members(sessionId),
      this.#deps.store.activeViewerIds(sessionId),
    ]).catch(() => [null, []] as const);
    if (!connected) return ended;
    const at = this.#deps.clock.now();
    let fixed = 0;
    for (const userId of rows) {
      if (connected.has(userId)) continue;
      this.#queue.viewer({ sessionId, userId, active: false, at });
      fixed++;
    }
    const marked = new Set(rows);
    for (const userId of connected) {
      if (marked.has(userId)) continue;
      this.#queue.viewer({ sessionId, userId, active: true, at });
      fixed++;
    }
    return ended + fixed;
  }

  /**
   * Re-reads what other nodes may have changed while their publishes were lost (Redis away): winners, deletions,
   * like counts and hearts of the active session. Messages themselves are caught up by the sequencer.
   */
  async resyncState(): Promise<void> {
    const active = this.#active;
    if (!active) return;
    const id = active.record.id;
    const { store } = this.#deps;
    // What arrives while the database is read is newer than what the read finds: it is not overwritten.
    const winnerEvents = active.winnerEvents;
    const likeVersions = new Map(active.messageLikeVersions);
    let winners: string[];
    let page: Awaited<ReturnType<ChatStore['listMessages']>>;
    let record: SessionRecord | undefined;
    try {
      [winners, page, record] = await Promise.all([
        store.getWinners(id),
        store.listMessages(id, { limit: RECENT_LIMIT }),
        store.getSession(id),
      ]);
    } catch (err) {
      this.#deps.log.debug({ err }, 'state resync failed; next time');
      return;
    }
    if (this.#active !== active) return;
    const nextWinners = new Set(winners);
    const winnersChanged =
      nextWinners.size !== active.winners.size || winners.some((w) => !active.winners.has(w));
    if (winnersChanged && active.winnerEvents === winnerEvents) {
      active.winners = nextWinners;
      this.hub.publish(id, { type: 'winner_update', session_id: id, user_ids: winners });
    }
    const inDb = new Map(page.messages.map((m) => [m.id, m]));
    const oldest = page.hasMore ? (page.messages[0]?.id ?? Number.POSITIVE_INFINITY) : 0;
    const newest = page.messages.at(-1)?.id ?? 0;
    const kept: StoredMessage[] = [];
    for (const m of active.recent) {
      const stored = inDb.get(m.id);
      if (!stored && m.id >= oldest && m.id <= newest) {
        forgetClientKey(active, m);
        rememberDeletion(active, m.id);
        this.hub.publish(id, { type: 'message_deleted', session_id: id, message_id: m.id });
        continue;
      }
      if (
        stored &&
        stored.likes !== m.likes &&
        active.messageLikeVersions.get(m.id) === likeVersions.get(m.id)
      ) {
        m.likes = stored.likes;
        this.hub.setMessageLikes(id, m.id, m.likes);
      }
      kept.push(m);
    }
    active.recent = kept;
    if (record && record.totalLikes > active.totalLikes) {
      active.totalLikes = record.totalLikes;
      this.hub.setTotalLikes(id, record.totalLikes);
    }
  }

  viewerCount(sessionId: number): number {
    return this.#presence.count(sessionId);
  }

  #sessionInfo(s: ActiveSession): SessionInfo {
    return toWireSession(s.record, {
      isActive: true,
      totalLikes: s.totalLikes,
      viewerCount: this.viewerCount(s.record.id),
    });
  }

  async status(): Promise<StatusResponse> {
    const { clock, settings, schedule } = this.#deps;
    const now = clock.now();
    const active = await this.activeSession();
    const window = active ? active.record : settings.enabled ? schedule.nextWindow(now) : null;
    const next = settings.enabled ? schedule.nextDrawAt(now) : null;
    const iso = (t: number | null | undefined) => (t == null ? null : new Date(t).toISOString());
    const phase = active ? (now < active.record.drawTime ? 'pre_draw' : 'post_draw') : 'closed';
    return {
      enabled: settings.enabled,
      is_active: active !== null,
      phase,
      server_time: new Date(now).toISOString(),
      next_draw_time: iso(next),
      opens_at: iso(window?.startsAt),
      closes_at: iso(window?.endsAt),
      session: active ? this.#sessionInfo(active) : null,
      settings: {
        max_messages_per_minute: settings.maxMessagesPerMinute,
        history_limit: settings.historyLimit,
        max_message_length: settings.maxMessageLength,
      },
    };
  }

  /** The active session if `sessionId` is it; otherwise the right error. */
  async requireActive(sessionId?: number): Promise<ActiveSession> {
    this.#requireEnabled();
    const active = await this.activeSession();
    if (sessionId !== undefined && active?.record.id !== sessionId) {
      const exists = await this.#deps.store.getSession(sessionId);
      if (!exists) throw new ChatError('not_found', `Session ${sessionId} does not exist.`);
      throw new ChatError('chat_closed', `Session ${sessionId} is not open.`);
    }
    if (!active) throw new ChatError('chat_closed');
    return active;
  }

  /** SPEC §3: with `LIVE_CHAT_ENABLED=false` every write is refused, the draw backend's and HOSTs' too. */
  #requireEnabled(): void {
    if (!this.#deps.settings.enabled) throw new ChatError('chat_disabled');
  }

  // ------------------------------------------------------------------ users

  async resolveUser(identity: IdentityInput): Promise<ChatUser> {
    const now = this.#deps.clock.now();
    const cached = this.#users.get(identity.userId);
    if (cached && sameClaims(cached.user.identity, identity)) {
      if (cached.until > now) return cached.user;
      if (cached.until + USER_STALE_MS > now) {
        this.#refreshLater(identity.userId);
        return cached.user;
      }
    }
    const claims = claimsOf(identity, now);
    for (let attempt = 1; ; attempt++) {
      const edits = this.#profileEdits;
      const preview = await this.#previewUser(claims);
      // A profile change that landed while this read was out may not be in it: read again (twice at most).
      if (!this.#editedSince(identity.userId, edits) || attempt === 3)
        return this.#rememberUser(identity, claims, preview, now, edits);
    }
  }

  /** The draw backend changed this user's profile after `edits` changes had been seen (see `#profileChanged`). */
  #editedSince(userId: string, edits: number): boolean {
    return (this.#editedAt.get(userId) ?? -1) > edits;
  }

  /** Forgets what this node cached of a user's profile: the draw backend changed it (here or on another node). */
  #profileChanged(userId: string): void {
    this.#users.delete(userId);
    this.#profileEdits++;
    this.#editedAt.delete(userId);
    this.#editedAt.set(userId, this.#profileEdits);
    // Only a read that started before an edit needs to know of it; the oldest edits are forgotten past a bound.
    if (this.#editedAt.size > PROFILE_EDITS_KEPT) {
      for (const id of this.#editedAt.keys()) {
        this.#editedAt.delete(id);
        if (this.#editedAt.size <= PROFILE_EDITS_KEPT / 2) break;
      }
    }
  }

  /**
   * Caches the user a profile read found, for `USER_CACHE_MS`. A read, not a write, on the handshake path: a
   * returning user whose claims did not change costs no write, and new or changed claims ride with the next group
   * commit instead of a transaction (an fsync) each.
   */
  #rememberUser(
    identity: IdentityInput,
    claims: UserClaimsInput,
    preview: UserPreview,
    now: number,
    edits: number,
  ): ChatUser {
    if (preview.write) this.#queue.user(claims);
    // `edits`: the changes seen before the read (a change that landed during it makes sendMessage read again).
    const user = chatUser(preview.user, identity, edits);
    this.#users.set(identity.userId, { user, until: now + USER_CACHE_MS });
    return user;
  }

  #refreshLater(userId: string): void {
    this.#staleUsers.add(userId);
    if (this.#staleTimer) return;
    this.#staleTimer = setTimeout(() => {
      this.#staleTimer = undefined;
      const refresh = this.#refreshUsers().finally(() => {
        if (this.#refreshingUsers === refresh) this.#refreshingUsers = undefined;
      });
      this.#refreshingUsers = refresh;
    }, USER_REFRESH_DELAY_MS);
    this.#staleTimer.unref();
  }

  /**
   * Reads the profiles of `#staleUsers` again and renews their entries: asked for in one turn, they go in one
   * batch of `#previewUser` (one statement per few hundred users).
   */
  async #refreshUsers(): Promise<void> {
    const now = this.#deps.clock.now();
    const edits = this.#profileEdits;
    const entries = [...this.#staleUsers].flatMap((id) => {
      const entry = this.#users.get(id);
      return entry ? [entry] : [];
    });
    this.#staleUsers.clear();
    let failure: unknown;
    await Promise.all(
      entries.map(async (entry) => {
        const claims = claimsOf(entry.user.identity, now);
        let preview: UserPreview;
        try {
          preview = await this.#previewUser(claims);
        } catch (err) {
          // The entry stays expired: the next comeback asks again.
          failure ??= err;
          return;
        }
        // Replaced or dropped meanwhile (new claims, a profile change): that one is newer.
        if (this.#users.get(entry.user.userId) === entry)
          this.#rememberUser(entry.user.identity, claims, preview, now, edits);
      }),
    );
    if (failure !== undefined) {
      this.#deps.log.warn({ err: failure, users: entries.length }, 'refreshing cached profiles failed');
    }
  }

  /**
   * The stored profile behind these claims, read together with those of every other handshake of this turn of
   * the event loop, or of this read window (`USER_READ_WINDOW_MS`) while reads follow each other closely: one
   * statement for a crowd (a reconnect storm, the minute before a draw) instead of one each.
   */
  #previewUser(claims: UserClaimsInput): Promise<UserPreview> {
    return new Promise((resolve, reject) => {
      if (!this.#userReads) {
        this.#userReads = [];
        const wait = this.#lastUserRead + this.#userReadWindowMs - performance.now();
        this.#userReadTimer =
          wait < 1
            ? this.loop.immediate(() => this.#readUsers(), LONG_TURN_MS)
            : this.loop.timeout(() => this.#readUsers(), wait);
      }
      this.#userReads.push({ claims, resolve, reject });
    });
  }

  /** Reads the waiting profiles (`#userReads`) in one go. */
  #readUsers(): void {
    const reads = this.#userReads;
    if (!reads) return;
    this.#userReads = undefined;
    this.loop.cancel(this.#userReadTimer);
    this.#userReadTimer = undefined;
    this.#lastUserRead = performance.now();
    const reading = this.#deps.store.previewUsersFromClaims(reads.map((r) => r.claims)).then(
      (previews) => {
        for (const [i, r] of reads.entries()) r.resolve(previews[i]!);
      },
      (err: unknown) => {
        for (const r of reads) r.reject(err);
      },
    );
    const tracked = reading.finally(() => {
      if (this.#readingUsers === tracked) this.#readingUsers = undefined;
    });
    this.#readingUsers = tracked;
  }

  async setUserProfile(userId: string, profile: { username?: string; profilePic?: string | null }) {
    this.#requireEnabled();
    const record = await this.#deps.store.setUserProfile(userId, profile, this.#deps.clock.now());
    // Every node forgets its copy (the bus delivers to this one too): their sockets' next messages carry the new
    // profile (see ChatUser.identity). Between windows no socket is open, and this node's copy is what matters.
    const active = this.#active;
    if (active) this.#deps.bus.publish([{ kind: 'profile', sessionId: active.record.id, userId }]);
    else this.#profileChanged(userId);
    return record;
  }

  // ------------------------------------------------------------------ writes

  /**
   * Stores a message (or finds the one a retry with the same `clientMsgId` stored). `duplicate`: it was stored
   * before; `toRoom`: this call is what sends it to the room (the sender's socket among them), so the sender
   * needs no answer of its own. A fresh message goes to the room after its commit; so does a retry of one whose
   * commit took effect but whose answer was lost (a PostgreSQL COMMIT that timed out after the fact), which
   * nobody was sent: the room gets it from the database, in id order.
   */
  async sendMessage(
    user: ChatUser,
    input: { message: string; clientMsgId?: string; sessionId?: number },
  ): Promise<{ message: ChatMessage; duplicate: boolean; toRoom: boolean }> {
    const session = await this.requireActive(input.sessionId);
    // The profile as it is now, not as it was when a socket opened hours ago (a Map lookup unless it changed).
    if (user.identity && this.#editedSince(user.userId, user.edits ?? -1))
      user = await this.resolveUser(user.identity);
    const text = normalizeMessageText(input.message, this.#deps.settings.maxMessageLength);
    const sessionId = session.record.id;
    const key = input.clientMsgId ? clientKey(user.userId, input.clientMsgId) : undefined;
    if (key) {
      const known =
        session.byClientId.get(key) ??
        (session.sending.has(key) ? await session.sending.get(key) : undefined);
      if (known) return { message: toWireMessage(known, session.winners), duplicate: true, toRoom: false };
    }
    const storing = this.#store(session, user, text, input.clientMsgId ?? null);
    if (key) {
      // Known before the limiter is asked (the call above runs to its first await), so that a retry arriving
      // meanwhile waits for this one.
      const sending = storing.then(
        (r) => r.stored,
        () => undefined,
      );
      session.sending.set(key, sending);
      void sending.then(() => {
        if (session.sending.get(key) === sending) session.sending.delete(key);
      });
    }
    const { stored, duplicate, toRoom } = await storing;
    const winners = this.#active?.record.id === sessionId ? this.#active.winners : session.winners;
    return { message: toWireMessage(stored, winners), duplicate, toRoom };
  }

  /** `sendMessage` past its checks: the rate limit, the group commit, a duplicate's delivery. */
  async #store(
    session: ActiveSession,
    user: ChatUser,
    text: string,
    clientMsgId: string | null,
  ): Promise<{ stored: StoredMessage; duplicate: boolean; toRoom: boolean }> {
    const sessionId = session.record.id;
    const decision = await this.limits.message(sessionId, user.userId);
    if (!decision.ok) {
      // A retry whose original this node does not hold (committed by another node whose news has not come yet,
      // or gone from the recent list) is answered with the original, limit or not: the database is asked here,
      // on the refusal path only (and when it cannot answer, the refusal stands).
      const original =
        clientMsgId === null
          ? undefined
          : await this.#deps.store
              .messageByClientId(sessionId, user.userId, clientMsgId)
              .catch(() => undefined);
      if (original) {
        refuseDeleted(original);
        return {
          stored: original,
          duplicate: true,
          toRoom: await this.#deliverUnsent(sessionId, original.id),
        };
      }
      throw new ChatError(
        'rate_limited',
        `You can send ${this.#deps.settings.maxMessagesPerMinute} messages a minute.`,
        { retryAfterMs: decision.retryAfterMs },
      );
    }
    let result: { message: StoredMessage; duplicate: boolean };
    try {
      result = await this.#queue.message({
        sessionId,
        userId: user.userId,
        username: user.username,
        profilePic: user.profilePic,
        isHost: user.isHost,
        message: text,
        clientMsgId,
        createdAt: this.#deps.clock.now(),
      });
    } catch (err) {
      decision.refund();
      throw err;
    }
    if (!result.duplicate) return { stored: result.message, duplicate: false, toRoom: true };
    decision.refund();
    refuseDeleted(result.message);
    return {
      stored: result.message,
      duplicate: true,
      toRoom: await this.#deliverUnsent(sessionId, result.message.id),
    };
  }

  /**
   * A message stored earlier that this node has not delivered yet (above the room's last id): read from the
   * database with everything before it, and delivered. True if it is delivered now.
   */
  async #deliverUnsent(sessionId: number, id: number): Promise<boolean> {
    const unsent = () => id > (this.#sequencer.lastId(sessionId) ?? Number.POSITIVE_INFINITY);
    if (!unsent()) return false;
    await this.#sequencer.catchUp(sessionId);
    return !unsent();
  }

  async likeSession(
    user: ChatUser,
    sessionId?: number,
  ): Promise<{ session_id: number; total_likes: number }> {
    const session = await this.requireActive(sessionId);
    const id = session.record.id;
    allowHeart(await this.limits.heart(id, user.userId));
    const total = await this.#queue.hearts(id, 1);
    return { session_id: id, total_likes: total };
  }

  /**
   * A heart from a socket, the commonest command of a draw (tens of thousands a second): the same checks as
   * `likeSession`, answered synchronously where possible (the session cached, the limiter in this process),
   * and nobody waits for the commit (the socket's answer is the coalesced `session_like_update`). Returns a
   * promise only when something had to be awaited; throws (or rejects) ChatError as `likeSession` does.
   */
  heartFromSocket(user: ChatUser, sessionId: number): Promise<void> | undefined {
    const decision =
      this.#activeNow()?.record.id === sessionId ? this.limits.heartNow?.(sessionId, user.userId) : undefined;
    if (!decision) {
      return (async () => {
        await this.requireActive(sessionId);
        allowHeart(await this.limits.heart(sessionId, user.userId));
        this.#queue.addHearts(sessionId, 1);
      })();
    }
    allowHeart(decision);
    this.#queue.addHearts(sessionId, 1);
    return undefined;
  }

  /**
   * `changed` is false for a repeat (the user had already liked it, in another tab say): nothing goes to the room
   * then, so a socket's command is answered with the count itself (the tab had guessed one more or one less).
   */
  async likeMessage(
    user: ChatUser,
    messageId: number,
    liked: boolean,
  ): Promise<{ message_id: number; likes: number; liked: boolean; changed: boolean }> {
    this.#requireEnabled();
    const message = this.#recentMessage(messageId) ?? (await this.#deps.store.getMessage(messageId));
    if (!message) throw new ChatError('not_found', `Message ${messageId} does not exist.`);
    await this.requireActive(message.sessionId);
    const decision = await this.limits.like(message.sessionId, user.userId);
    if (!decision.ok) {
      throw new ChatError('rate_limited', 'Too many likes; slow down a little.', {
        retryAfterMs: decision.retryAfterMs,
      });
    }
    const result = await this.#queue.messageLike({
      messageId,
      userId: user.userId,
      liked,
      at: this.#deps.clock.now(),
    });
    if (!result) throw new ChatError('not_found', `Message ${messageId} does not exist.`);
    return { message_id: messageId, likes: result.likes, liked, changed: result.changed };
  }

  async setWinners(
    sessionId: number,
    userIds: readonly string[],
  ): Promise<{ session_id: number; user_ids: string[] }> {
    this.#requireEnabled();
    const { store, clock, bus } = this.#deps;
    if (!(await store.getSession(sessionId)))
      throw new ChatError('not_found', `Session ${sessionId} does not exist.`);
    const unique = [...new Set(userIds)];
    const version = await store.setWinners(sessionId, unique, clock.now());
    bus.publish([{ kind: 'winners', sessionId, userIds: unique, version }]);
    return { session_id: sessionId, user_ids: unique };
  }

  async deleteMessage(messageId: number): Promise<void> {
    this.#requireEnabled();
    const deleted = await this.#deps.store.deleteMessage(messageId, this.#deps.clock.now());
    if (!deleted) throw new ChatError('not_found', `Message ${messageId} does not exist.`);
    this.#deps.bus.publish([{ kind: 'message_deleted', sessionId: deleted.sessionId, messageId }]);
  }

  // ------------------------------------------------------------------ reads

  async history(
    userId: string | null,
    query: { session_id?: number; limit?: number; before_id?: number; after_id?: number },
  ): Promise<HistoryResponse> {
    const { store, settings, clock } = this.#deps;
    let sessionId = query.session_id;
    if (sessionId === undefined) {
      const active = settings.enabled ? await this.activeSession() : null;
      sessionId = active?.record.id ?? (await store.latestSessionStartedBy(clock.now()))?.id;
      if (sessionId === undefined) return { session_id: null, messages: [], has_more: false };
    } else if (this.#active?.record.id !== sessionId && !(await store.getSession(sessionId))) {
      throw new ChatError('not_found', `Session ${sessionId} does not exist.`);
    }
    const limit = Math.min(query.limit ?? settings.historyLimit, settings.historyLimit);
    const page = await store.listMessages(sessionId, {
      limit,
      beforeId: query.before_id,
      afterId: query.after_id,
      ...(userId ? { likedBy: userId } : {}),
    });
    const winners =
      this.#active?.record.id === sessionId
        ? this.#active.winners
        : new Set(await store.getWinners(sessionId));
    const liked = page.liked;
    return {
      session_id: sessionId,
      messages: page.messages.map((m) => toWireMessage(m, winners, liked.has(m.id))),
      has_more: page.hasMore,
    };
  }

  /**
   * Everything a new socket needs for `init`: the session, who you are, counts, and recent history or every
   * message after `since`. Call after `hub.join` so nothing published meanwhile is lost.
   */
  async initPayload(
    user: ChatUser,
    sessionId: number,
    resume: { since?: number; epoch?: string } = {},
  ): Promise<{
    session: SessionInfo;
    you: You;
    /** The messages as JSON text (`wireMessagesJson`), for `initEventJson`. */
    messagesJson: string;
    lastMessageId: number;
    totalLikes: number;
    resync: ResyncReason | undefined;
    /**
     * A resume: the messages at or below `since` deleted since (of the latest `REPLAYED_DELETIONS`), to send as
     * `message_deleted` after `init`. Empty otherwise.
     */
    deleted: number[];
  }> {
    const session = await this.requireActive(sessionId);
    const { store, settings } = this.#deps;
    let { since } = resume;
    let resync: ResyncReason | undefined;
    if (since !== undefined && resume.epoch !== undefined && resume.epoch !== this.#epoch)
      resync = 'epoch_changed';
    let messages: StoredMessage[] | undefined;
    // A node that has not heard of the client's newest messages yet (their publish is late or lost) reads them
    // from the database first: otherwise it would replay them later as live messages, at or before `since`
    // (issue 6: found by test/hardening/faults.test.ts H-FAULT-14).
    if (since !== undefined && !resync && this.#deps.bus.shared && since > (session.recent.at(-1)?.id ?? 0)) {
      await this.#sequencer.catchUp(sessionId);
    }
    const recent = session.recent;
    if (since !== undefined && !resync) {
      const newest = recent.at(-1)?.id ?? 0;
      if (since > newest && since > (await store.lastMessageId(sessionId))) {
        // Ids only grow: a position beyond the newest message belongs to another history.
        resync = 'unknown_position';
      } else if (recent.length > 0 && (session.recentComplete || since >= recent[0]!.id - 1)) {
        messages = newerThan(recent, since);
      } else if (recent.length === 0 && session.recentComplete) {
        messages = [];
      } else {
        messages = await store.messagesAfter(sessionId, since, MAX_RESUME_MESSAGES + 1);
      }
      if (messages && messages.length > MAX_RESUME_MESSAGES) {
        resync = 'too_far_behind';
        messages = undefined;
      }
    }
    if (resync) since = undefined;
    messages ??= recent.slice(-settings.historyLimit);
    const lastMessageId = Math.max(since ?? 0, messages.at(-1)?.id ?? 0);
    // Only a message with likes can be one this user liked: the database is asked about those alone, so a resume
    // (a few new messages, seldom liked yet) or a quiet room costs no read. The counts are this node's, kept by
    // the same events that update everyone's; a like committed elsewhere a moment ago and not yet heard of here
    // shows with its `message_like_update`, as it does for every viewer.
    const maybeLiked = messages.filter((m) => m.likes > 0).map((m) => m.id);
    const liked = maybeLiked.length
      ? await store.likedMessageIds(user.userId, maybeLiked)
      : new Set<number>();
    return {
      session: this.#sessionInfo(session),
      you: {
        user_id: user.userId,
        username: user.username,
        profile_pic: user.profilePic,
        is_host: user.isHost,
        is_winner: session.winners.has(user.userId),
      },
      messagesJson: wireMessagesJson(messages, session.winners, liked),
      lastMessageId,
      totalLikes: session.totalLikes,
      resync,
      deleted: since === undefined ? [] : session.deleted.filter((id) => id <= since!),
    };
  }

  /** Commits whatever is queued (shutdown, tests). */
  drain(): Promise<void> {
    return this.#queue.drain();
  }

  // ------------------------------------------------------------------ after commit

  #onCommitted(batch: WriteBatch, result: WriteBatchResult, committedAt: number): void {
    const { metrics } = this.#deps;
    const events: BusEvent[] = [];
    const versions = new Map(result.versions.map((v) => [v.sessionId, v.version]));
    for (const r of result.messages) {
      if (r.duplicate) continue;
      metrics.messages.inc();
      events.push({
        kind: 'message',
        sessionId: r.message.sessionId,
        message: r.message,
        prevId: r.prevId,
        committedAt,
      });
    }
    let hearts = 0;
    for (const h of batch.hearts) hearts += h.count;
    if (hearts > 0) metrics.sessionHearts.inc(hearts);
    for (const h of result.hearts) {
      events.push({
        kind: 'session_likes',
        sessionId: h.sessionId,
        totalLikes: h.totalLikes,
        version: versions.get(h.sessionId) ?? 0,
      });
    }
    // One count per message: each like of a batch reads the count after it, all under the batch's one version,
    // and a node applies one count per version (the first would stay, short of the rest of the batch's likes).
    const likeCounts = new Map<number, BusEvent>();
    result.messageLikes.forEach((r, i) => {
      if (!r?.changed) return;
      metrics.messageLikes.inc({ action: batch.messageLikes[i]!.liked ? 'like' : 'unlike' });
      likeCounts.set(r.messageId, {
        kind: 'message_likes',
        sessionId: r.sessionId,
        messageId: r.messageId,
        likes: r.likes,
        version: versions.get(r.sessionId) ?? 0,
      });
    });
    events.push(...likeCounts.values());
    this.#deps.bus.publish(events);
  }

  #onBus(events: readonly BusEvent[]): void {
    for (const e of events) {
      const active = this.#active?.record.id === e.sessionId ? this.#active : null;
      switch (e.kind) {
        case 'message':
          // In id order, exactly once, whichever node committed it.
          this.#sequencer.accept(e.sessionId, {
            message: e.message,
            prevId: e.prevId,
            committedAt: e.committedAt,
          });
          break;
        case 'session_likes':
          if (!active || e.version <= active.likesVersion) break;
          active.likesVersion = e.version;
          active.totalLikes = e.totalLikes;
          this.hub.setTotalLikes(e.sessionId, e.totalLikes);
          break;
        case 'message_likes': {
          if (!active || e.version <= (active.messageLikeVersions.get(e.messageId) ?? 0)) break;
          active.messageLikeVersions.set(e.messageId, e.version);
          const m = findById(active.recent, e.messageId);
          if (m) m.likes = e.likes;
          this.hub.setMessageLikes(e.sessionId, e.messageId, e.likes);
          break;
        }
        case 'message_deleted':
          if (active) {
            const gone = findById(active.recent, e.messageId);
            if (gone) forgetClientKey(active, gone);
            active.recent = active.recent.filter((m) => m.id !== e.messageId);
            rememberDeletion(active, e.messageId);
          }
          this.hub.publish(e.sessionId, {
            type: 'message_deleted',
            session_id: e.sessionId,
            message_id: e.messageId,
          });
          break;
        case 'winners':
          if (active) {
            // Two lists set at once on two nodes: each node has its own at once and the other's later, by Redis.
            if (e.version !== undefined) {
              if (e.version <= active.winnersVersion) break;
              active.winnersVersion = e.version;
            }
            active.winners = new Set(e.userIds);
            active.winnerEvents++;
          }
          this.hub.publish(e.sessionId, {
            type: 'winner_update',
            session_id: e.sessionId,
            user_ids: e.userIds,
          });
          break;
        case 'presence':
          this.#presence.recount(e.sessionId);
          break;
        case 'profile':
          this.#profileChanged(e.userId);
          break;
      }
    }
  }

  #deliverMessage(sessionId: number, message: StoredMessage, committedAt: number): void {
    const active = this.#active?.record.id === sessionId ? this.#active : null;
    if (active) this.#remember(active, message);
    const winners = active?.winners ?? new Set<string>();
    this.hub.publish(
      sessionId,
      { type: 'new_message', message: toWireMessage(message, winners) },
      committedAt,
    );
  }

  #remember(session: ActiveSession, m: StoredMessage): void {
    const last = session.recent.at(-1);
    if (last && m.id <= last.id) return;
    session.recent.push(m);
    if (m.clientMsgId) session.byClientId.set(clientKey(m.userId, m.clientMsgId), m);
    if (session.recent.length > RECENT_LIMIT * 1.25) {
      const dropped = session.recent.splice(0, session.recent.length - RECENT_LIMIT);
      session.recentComplete = false;
      for (const d of dropped) forgetClientKey(session, d);
    }
  }

  #recentMessage(id: number): StoredMessage | undefined {
    return this.#active ? findById(this.#active.recent, id) : undefined;
  }

  #onPresence(sessionId: number, userId: string, active: boolean): void {
    this.#presence.changed(sessionId, userId, active);
    const at = this.#deps.clock.now();
    if (active) {
      this.#queue.viewer({ sessionId, userId, active, at });
      return;
    }
    // The row says whether the user watches at all: leave it active while another node still has them.
    const check = this.#presence
      .elsewhere(sessionId, userId)
      .catch(() => false)
      .then((elsewhere) => {
        if (!elsewhere) this.#queue.viewer({ sessionId, userId, active: false, at });
      })
      .finally(() => this.#presenceChecks.delete(check));
    this.#presenceChecks.add(check);
  }
}

/** The index of the first message of a list sorted by id whose id is above `id` (the list's length if none). */
function indexAbove(list: readonly StoredMessage[], id: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.id <= id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The messages of a list sorted by id that are newer than `id`, found by binary search: a reconnect storm resumes
 * thousands of sockets against a recent list of up to 2,500 messages, and a filter over all of them for each was
 * 150 ms of the server's CPU in a storm that followed a busy minute.
 */
export function newerThan(list: readonly StoredMessage[], id: number): StoredMessage[] {
  return list.slice(indexAbove(list, id));
}

/** Binary search in a list sorted by id. */
function findById(list: readonly StoredMessage[], id: number): StoredMessage | undefined {
  const m = list[indexAbove(list, id - 1)];
  return m?.id === id ? m : undefined;
}

function clientKey(userId: string, clientMsgId: string): string {
  return `${userId}\u0000${clientMsgId}`;
}

/** A profile read waiting for its batch. */
interface UserRead {
  claims: UserClaimsInput;
  resolve: (preview: UserPreview) => void;
  reject: (err: unknown) => void;
}

/** What the users table is told of a user by their token's claims. */
function claimsOf(identity: IdentityInput, at: number): UserClaimsInput {
  return {
    id: identity.userId,
    claimName: identity.claimName,
    claimPicture: identity.claimPicture,
    fallbackName: identity.fallbackName,
    at,
  };
}

/** A user as this node resolved it: with the claims and the count of profile changes it was resolved from. */
type ResolvedUser = ChatUser & Required<Pick<ChatUser, 'identity' | 'edits'>>;

function chatUser(record: UserRecord, identity: IdentityInput, edits: number): ResolvedUser {
  return {
    userId: record.id,
    username: record.username,
    profilePic: record.profilePic,
    isHost: identity.isHost,
    identity,
    edits,
  };
}

/** Do two sets of token claims describe the user the same way? (Compared field by field: a key string built of
 * them would be one more string per connected user.) */
function sameClaims(a: IdentityInput, b: IdentityInput): boolean {
  return (
    a.claimName === b.claimName &&
    a.claimPicture === b.claimPicture &&
    a.fallbackName === b.fallbackName &&
    a.isHost === b.isHost
  );
}

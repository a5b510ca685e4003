import { TokenBucket } from '../domain/rate-limit.js';
import {
  type ChatMessage,
  type ClientCommand,
  CloseCode,
  HistoryResponse,
  type ServerEvent,
  ServerEventParser,
  StatusResponse,
} from '../protocol/index.js';
import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { randomId, tokenExpiresAt } from './token.js';
import type {
  BackoffOptions,
  ChatClientOptions,
  ChatErrorInfo,
  ChatItem,
  ChatSnapshot,
  ClosedInfo,
  FetchLike,
  PendingMessage,
  SendResult,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';

/** Renew the token when it has less than this left (the server closes 4401 when it runs out). */
const TOKEN_RENEW_BEFORE_MS = 60_000;
/** Least wait between two renewals, should the token source keep handing out the same nearly-expired token. */
const TOKEN_RENEW_MIN_GAP_MS = 10_000;
/** A socket that has sent nothing (not even a `pong`) for this long after a ping (at most `heartbeatMs`) is taken for dead. */
const HEARTBEAT_TIMEOUT_MS = 10_000;
/** While the chat is turned off there is no opening to wait for; look again this often. */
const DISABLED_POLL_MS = 60_000;
/** Spread reconnects at a window's opening over this long, so every viewer does not arrive in the same ms. */
const OPENING_SPREAD_MS = 2_000;
/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const WS_OPEN = 1;
/** A refusal this soon after a message like or unlike may be that like's (`#recheckLikes`). */
const LIKE_REFUSAL_WINDOW_MS = 5_000;
/** Quiet time after the last such refusal before the counts are read again. */
const LIKE_RECHECK_DELAY_MS = 500;
/**
 * Hearts a client sends: bursts of this many, then this many a second; taps beyond are not sent. Under the
 * server's limit per user (src/realtime/limits.ts), so that one eager tapper is not refused.
 */
const CLIENT_HEART_BURST = 20;
const CLIENT_HEARTS_PER_SECOND = 10;
/** Errors about joining, cleared by the next `init`. */
const JOIN_ERRORS: ReadonlySet<string> = new Set([
  'forbidden',
  'not_found',
  'unauthorized',
  'too_many_connections',
]);

class HttpError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

const EMPTY: ChatSnapshot = Object.freeze({
  state: 'idle',
  status: null,
  clockOffsetMs: 0,
  session: null,
  you: null,
  messages: Object.freeze([]) as readonly ChatItem[],
  pending: Object.freeze([]) as readonly PendingMessage[],
  viewerCount: 0,
  totalLikes: 0,
  closed: null,
  reconnectAt: null,
  attempt: 0,
  error: null,
  invalidEvents: 0,
});

/**
 * A draw-chat connection: finds the active session, keeps one WebSocket open, reconnects with backoff and
 * jitter, resumes with `since` so nothing is missed or doubled, and sends optimistically with `client_msg_id`.
 * Read it through `getSnapshot()` and `subscribe()`; it has no UI and no DOM dependency.
 */
export class ChatClient {
  readonly #baseUrl: string;
  readonly #getTokenFn: ChatClientOptions['getToken'];
  readonly #pinnedSession: number | undefined;
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #fetch: FetchLike | undefined;
  readonly #batch: boolean;
  readonly #backoff: BackoffOptions;
  readonly #heartbeatMs: number;
  readonly #maxMessages: number;
  readonly #random: () => number;
  readonly #setTimeout: (fn: () => void, ms: number) => unknown;
  readonly #clearTimeout: (handle: unknown) => void;
  readonly #now: () => number;
  /** The heart throttle (see `like`), and no heart before this instant. */
  readonly #hearts: TokenBucket;
  #heartsPausedUntil = Number.NEGATIVE_INFINITY;

  #snap: ChatSnapshot = EMPTY;
  #draft: { -readonly [K in keyof ChatSnapshot]: ChatSnapshot[K] } | null = null;
  /** The draft's message array is a private copy (insert in place): one copy per frame, not per event. */
  #draftOwnsMessages = false;
  readonly #listeners = new Set<() => void>();

  #ws: WebSocketLike | null = null;
  /** Bumped for every connection attempt; callbacks of older attempts see a different number and do nothing. */
  #generation = 0;
  #sessionId: number | null = null;
  #needStatus = true;
  /** The highest stored message id seen in this session: the `since` of the next connection. */
  #lastId = 0;
  /** The `since` the current socket was opened with (undefined: a fresh `init`). */
  #resumeSince: number | undefined;
  /** The server's history the ids belong to (from `init`); sent back with `since` so a stale resume is noticed. */
  #epoch: string | undefined;
  /** Set by `resync_required`: the next `init` replaces the list instead of adding to it. */
  #resync = false;
  #token: string | null = null;
  #forceToken = false;
  /** The token the server last refused (4401, HTTP 401), until a connection succeeds. */
  #refusedToken: string | null = null;
  #hadInit = false;
  /** A session the server just refused as not active while status called it active (a boundary race). */
  #refusedSession: number | null = null;
  readonly #sentOnSocket = new Set<string>();
  readonly #waiters = new Map<string, Array<(result: SendResult) => void>>();

  #reconnectTimer: unknown;
  #renewTimer: unknown;
  #heartbeatTimer: unknown;
  #lastFrameAt = 0;
  /** When a message like or unlike was last sent (an optimistic change the server may refuse). */
  #likeSentAt = Number.NEGATIVE_INFINITY;
  /** The re-read of the shown counts after a refusal (`#recheckLikes`). */
  #likesCheckTimer: unknown;

  constructor(options: ChatClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#getTokenFn = options.getToken;
    this.#pinnedSession = options.sessionId;
    this.#WebSocket = options.WebSocket;
    this.#fetch = options.fetch;
    this.#batch = options.batch ?? true;
    this.#backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.#heartbeatMs = options.heartbeatMs ?? 25_000;
    this.#maxMessages = options.maxMessages ?? 500;
    this.#random = options.random ?? Math.random;
    this.#setTimeout = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimeout =
      options.clearTimeout ??
      ((handle) => globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0]));
    this.#now = options.now ?? Date.now;
    this.#hearts = new TokenBucket(CLIENT_HEART_BURST, CLIENT_HEARTS_PER_SECOND, { now: () => this.#now() });
  }

  // ------------------------------------------------------------------ reading

  /** The current snapshot; the same object until something changes. */
  readonly getSnapshot = (): ChatSnapshot => this.#snap;

  /** Calls `listener` after every change; returns the unsubscribe function. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  /** The server's idea of now (ms), from the last status: use it for countdowns. */
  serverNow(): number {
    return this.#now() + this.#snap.clockOffsetMs;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Connects (once); later calls do nothing until `stop()`. */
  start(): void {
    if (this.#snap.state !== 'idle' && this.#snap.state !== 'stopped') return;
    this.#update((d) => {
      d.state = 'connecting';
      d.error = null;
    });
    void this.#connect();
  }

  /** Closes the socket and cancels every timer. Pending messages stay pending; `start()` resumes. */
  stop(): void {
    this.#generation++;
    this.#clearTimers();
    const ws = this.#ws;
    this.#ws = null;
    if (ws) closeQuietly(ws, 1000, 'client stopped');
    this.#update((d) => {
      d.state = 'stopped';
      d.reconnectAt = null;
    });
  }

  /** Skips the wait before the next attempt (e.g. when the browser comes back online). */
  reconnectNow(): void {
    const { state } = this.#snap;
    if ((state === 'reconnecting' || state === 'connecting') && this.#ws === null) {
      this.#attemptSoon(0);
    }
  }

  /** Reads `/live-chat/status` again (e.g. when a countdown reaches zero); null when that fails. */
  async refreshStatus(): Promise<StatusResponse | null> {
    try {
      const status = await this.#fetchStatus(await this.#currentToken());
      this.#update((d) => this.#recordStatus(d, status));
      return status;
    } catch {
      return null;
    }
  }

  // ------------------------------------------------------------------ actions

  /**
   * Sends a message optimistically: it shows at once in `pending`, and the promise resolves when the server
   * stored it (`ok: true`) or refused it (`ok: false`, the message stays in `pending` as failed, for `retry`).
   * Sent while the connection is down, it goes out after the reconnect (same `client_msg_id`: never twice).
   */
  send(text: string): Promise<SendResult> {
    const message = text.trim();
    const limit = this.#snap.status?.settings.max_message_length;
    const invalid =
      message === ''
        ? 'The message is empty.'
        : limit !== undefined && [...message].length > limit
          ? `Messages can be at most ${limit} characters long.`
          : null;
    if (invalid !== null) {
      const code = message === '' ? 'invalid_message' : 'message_too_long';
      return Promise.resolve({ ok: false, error: { code, message: invalid, at: this.#now() } });
    }
    const pending: PendingMessage = {
      client_msg_id: randomId(this.#random),
      message,
      created_at: new Date(this.serverNow()).toISOString(),
      status: 'pending',
      error: null,
    };
    const result = this.#waitFor(pending.client_msg_id);
    this.#update((d) => {
      d.pending = [...d.pending, pending];
    });
    this.#dispatchPending(pending);
    return result;
  }

  /** Sends a failed message again, with the same `client_msg_id`. */
  retry(clientMsgId: string): Promise<SendResult> {
    const found = this.#snap.pending.find((p) => p.client_msg_id === clientMsgId);
    if (!found) {
      return Promise.resolve({
        ok: false,
        error: { code: 'not_found', message: 'No such message to retry.', at: this.#now() },
      });
    }
    const result = this.#waitFor(clientMsgId);
    if (found.status === 'failed') {
      const again: PendingMessage = { ...found, status: 'pending', error: null };
      this.#replacePending(again);
      this.#dispatchPending(again);
    }
    return result;
  }

  /** Forgets a failed message. */
  discard(clientMsgId: string): void {
    this.#update((d) => {
      d.pending = d.pending.filter((p) => p.client_msg_id !== clientMsgId || p.status !== 'failed');
    });
  }

  /**
   * One heart for the session. Returns false when not connected, or when the tap is not sent: hearts go out at
   * most `CLIENT_HEARTS_PER_SECOND` a second (bursts of `CLIENT_HEART_BURST`), under the server's own limit, and
   * none until the `retry_after_ms` of a refusal has passed (several tabs of one user share the server's limit).
   */
  like(): boolean {
    if (this.#now() < this.#heartsPausedUntil || !this.#canSend()) return false;
    return this.#hearts.tryTake().ok && this.#command({ type: 'like' });
  }

  /** Likes a message (optimistic; the server's count follows). Returns false when not connected or liked. */
  likeMessage(messageId: number): boolean {
    return this.#toggleLike(messageId, true);
  }

  /** Takes a like back (optimistic). Returns false when not connected or not liked. */
  unlikeMessage(messageId: number): boolean {
    return this.#toggleLike(messageId, false);
  }

  /** Clears `snapshot.error`. */
  clearError(): void {
    if (this.#snap.error) this.#update((d) => (d.error = null));
  }

  // ------------------------------------------------------------------ connecting

  async #connect(): Promise<void> {
    const generation = ++this.#generation;
    this.#clearReconnectTimer();
    try {
      const token = await this.#currentToken();
      if (generation !== this.#generation) return;
      if (this.#needStatus || this.#sessionId === null) {
        const status = await this.#fetchStatus(token);
        if (generation !== this.#generation) return;
        this.#needStatus = false;
        if (!this.#adoptStatus(status)) return;
      }
      this.#openSocket(token, generation);
    } catch (err) {
      if (generation !== this.#generation) return;
      if (err instanceof HttpError && err.status === 401) this.#refused(this.#token);
      this.#scheduleReconnect();
    }
  }

  /** Takes the session from a status answer; false when there is none to join (the `closed` state is set). */
  #adoptStatus(status: StatusResponse): boolean {
    let joinable = false;
    this.#update((d) => {
      this.#recordStatus(d, status);
      const active = status.session;
      const target = this.#pinnedSession ?? active?.id ?? null;
      const open = status.enabled && active !== null && active.id === target;
      if (open && target === this.#refusedSession) {
        // Status still calls it active but the socket was refused: the window is ending right now.
        this.#refusedSession = null;
        return;
      }
      this.#refusedSession = null;
      if (open) {
        if (target !== this.#sessionId) this.#resetSession(d, target);
        joinable = true;
        return;
      }
      d.state = 'closed';
      d.closed = {
        reason: !status.enabled ? 'disabled' : (d.closed?.reason ?? 'not_active'),
        opensAt: status.opens_at,
        closesAt: status.closes_at,
      };
    });
    if (!joinable) this.#scheduleOpening(status);
    return joinable;
  }

  #recordStatus(d: Draft, status: StatusResponse): void {
    d.status = status;
    const serverTime = Date.parse(status.server_time);
    if (Number.isFinite(serverTime)) d.clockOffsetMs = serverTime - this.#now();
  }

  /** A different session (the next draw): its messages replace the old ones. */
  #resetSession(d: Draft, sessionId: number | null): void {
    this.#sessionId = sessionId;
    this.#lastId = 0;
    d.messages = [];
    d.closed = null;
    d.totalLikes = 0;
    d.viewerCount = 0;
  }

  /** Waits for the next window's opening (or polls while the chat is off), then connects. */
  #scheduleOpening(status: StatusResponse): void {
    this.#clearReconnectTimer();
    let delay: number;
    const opensAt = status.opens_at ? Date.parse(status.opens_at) : Number.NaN;
    if (this.#pinnedSession !== undefined && status.session && status.session.id !== this.#pinnedSession) {
      // The pinned session is over and another one is open: nothing to wait for.
      this.#update((d) => (d.reconnectAt = null));
      return;
    }
    if (!status.enabled || !Number.isFinite(opensAt)) {
      delay = DISABLED_POLL_MS;
    } else {
      const wait = opensAt - Date.parse(status.server_time);
      if (wait > 0) {
        this.#update((d) => (d.attempt = 0));
        delay = wait + Math.round(this.#random() * OPENING_SPREAD_MS);
      } else {
        // The window should be open by now but is not (yet): back off rather than spin.
        delay = this.#nextBackoff();
      }
    }
    this.#setReconnectTimer(Math.min(delay, MAX_TIMER_MS), () => {
      this.#needStatus = true;
      void this.#connect();
    });
  }

  #openSocket(token: string, generation: number): void {
    const sessionId = this.#sessionId!;
    const params = new URLSearchParams({ token });
    const since = this.#lastId > 0 ? this.#lastId : undefined;
    if (since !== undefined) {
      params.set('since', String(since));
      if (this.#epoch !== undefined) params.set('epoch', this.#epoch);
    }
    if (this.#batch) params.set('batch', '1');
    const url = `${this.#wsBase()}/live-chat/ws/${sessionId}?${params}`;
    const Ctor = this.#WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor)
      throw new Error('No WebSocket implementation: pass options.WebSocket (e.g. the `ws` package).');
    const ws = new Ctor(url);
    this.#ws = ws;
    this.#resumeSince = since;
    this.#resync = false;
    this.#sentOnSocket.clear();
    ws.onopen = () => {
      if (generation === this.#generation) this.#lastFrameAt = this.#now();
    };
    ws.onmessage = (event: { data?: unknown }) => {
      if (generation === this.#generation) this.#onFrame(event.data);
    };
    ws.onerror = () => {
      // A close event follows; that is where we decide what to do.
    };
    ws.onclose = (event: { code?: number; reason?: string }) => {
      if (generation !== this.#generation) return;
      this.#ws = null;
      this.#onClose(event.code ?? 1006, event.reason ?? '');
    };
  }

  #onClose(code: number, reason: string): void {
    this.#stopLiveTimers();
    const state = this.#snap.state;
    if (state === 'stopped') return;
    switch (code) {
      case CloseCode.UNAUTHORIZED:
        this.#refused(this.#token);
        this.#scheduleReconnect();
        return;
      case CloseCode.CHAT_CLOSED:
        this.#refusedSession = this.#sessionId;
        this.#needStatus = true;
        this.#enterClosed();
        this.#attemptSoon(0);
        return;
      case CloseCode.NOT_FOUND:
        if (this.#pinnedSession !== undefined) {
          this.#halt('not_found', 'This chat session does not exist.');
          return;
        }
        this.#needStatus = true;
        this.#sessionId = null;
        this.#scheduleReconnect();
        return;
      case CloseCode.TOO_MANY_CONNECTIONS:
        // Other tabs hold the connections; wait longer than for a plain drop, and say why (until a join succeeds).
        this.#update((d) => {
          d.attempt += 2;
          d.error = {
            code: 'too_many_connections',
            message:
              'This account has the chat open in too many tabs or devices; close one and this one joins.',
            at: this.#now(),
          };
        });
        this.#scheduleReconnect();
        return;
      case CloseCode.FORBIDDEN:
        this.#halt('forbidden', reason || 'You are not allowed to join this chat.');
        return;
      case CloseCode.POLICY:
        // 1008 is a bad Origin, or a client the server judged abusive (floods): retrying would not help.
        this.#halt(
          'forbidden',
          reason === 'origin not allowed' || reason === ''
            ? 'This page’s origin is not allowed to connect (CORS_ORIGINS).'
            : `The server closed the connection: ${reason}.`,
        );
        return;
      default:
        this.#scheduleReconnect();
    }
  }

  #enterClosed(reason?: ClosedInfo['reason']): void {
    this.#update((d) => {
      d.state = 'closed';
      d.closed = {
        reason: reason ?? d.closed?.reason ?? 'not_active',
        opensAt: d.status?.opens_at ?? null,
        closesAt: d.status?.closes_at ?? null,
      };
      this.#failAllPending(d, 'chat_closed', 'The chat is closed.');
    });
  }

  /** Gives up for good (until `start()`): retrying would not help. */
  #halt(code: string, message: string): void {
    this.#generation++;
    this.#clearTimers();
    this.#update((d) => {
      d.state = 'stopped';
      d.reconnectAt = null;
      d.error = { code, message, at: this.#now() };
      // Nothing will carry them now: they fail with the reason (their `send()` settles), and can be retried
      // should the client be started again.
      this.#failAllPending(d, code, message);
    });
  }

  #scheduleReconnect(): void {
    const delay = this.#nextBackoff();
    const state = this.#snap.state;
    this.#update((d) => {
      if (state !== 'closed') d.state = this.#hadInit ? 'reconnecting' : 'connecting';
    });
    this.#setReconnectTimer(delay, () => void this.#connect());
  }

  #nextBackoff(): number {
    const attempt = this.#snap.attempt + 1;
    this.#update((d) => (d.attempt = attempt));
    return backoffDelay(attempt, this.#backoff, this.#random);
  }

  #attemptSoon(delay: number): void {
    this.#setReconnectTimer(delay, () => void this.#connect());
  }

  #setReconnectTimer(delay: number, fn: () => void): void {
    this.#clearReconnectTimer();
    this.#update((d) => (d.reconnectAt = this.#now() + delay));
    this.#reconnectTimer = this.#setTimeout(() => {
      this.#reconnectTimer = undefined;
      fn();
    }, delay);
  }

  #clearReconnectTimer(): void {
    if (this.#reconnectTimer !== undefined) this.#clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
  }

  #stopLiveTimers(): void {
    if (this.#renewTimer !== undefined) this.#clearTimeout(this.#renewTimer);
    if (this.#heartbeatTimer !== undefined) this.#clearTimeout(this.#heartbeatTimer);
    if (this.#likesCheckTimer !== undefined) this.#clearTimeout(this.#likesCheckTimer);
    this.#renewTimer = undefined;
    this.#heartbeatTimer = undefined;
    this.#likesCheckTimer = undefined;
  }

  /**
   * A refusal soon after a like or unlike (rate limited, the message deleted meanwhile): the optimistic change may
   * be one the server did not make, and the answer does not say which command it refuses. Once the refusals stop
   * for a moment, the shown messages' counts and `liked_by_me` are read again from the server.
   */
  #recheckLikes(): void {
    if (this.#now() - this.#likeSentAt > LIKE_REFUSAL_WINDOW_MS || this.#sessionId === null) return;
    if (this.#likesCheckTimer !== undefined) this.#clearTimeout(this.#likesCheckTimer);
    const generation = this.#generation;
    const sessionId = this.#sessionId;
    this.#likesCheckTimer = this.#setTimeout(() => {
      this.#likesCheckTimer = undefined;
      void this.#refreshShown(generation, sessionId);
    }, LIKE_RECHECK_DELAY_MS);
  }

  #clearTimers(): void {
    this.#clearReconnectTimer();
    this.#stopLiveTimers();
  }

  // ------------------------------------------------------------------ tokens and HTTP

  async #currentToken(): Promise<string> {
    const token = this.#token;
    const expiresAt = token ? tokenExpiresAt(token) : null;
    const stale = expiresAt !== null && expiresAt - this.#now() < TOKEN_RENEW_BEFORE_MS;
    if (token && !this.#forceToken && !stale) return token;
    const fresh = await this.#getTokenFn({ refused: this.#refusedToken });
    this.#token = fresh;
    this.#forceToken = false;
    if (fresh === this.#refusedToken) {
      // The source has nothing better: keep trying (the viewer may sign in again elsewhere), and say why.
      this.#update((d) => {
        d.error = {
          code: 'unauthorized',
          message: 'Your sign-in is not accepted any more; sign in again to rejoin.',
          at: this.#now(),
        };
      });
    }
    return fresh;
  }

  /** The server refused `token` (4401, HTTP 401): the next connection asks `getToken` for another one. */
  #refused(token: string | null): void {
    this.#refusedToken = token;
    this.#forceToken = true;
  }

  /** Renews the token on the open socket (`auth`) shortly before it expires. */
  #armRenewal(generation: number): void {
    if (this.#renewTimer !== undefined) this.#clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    const expiresAt = this.#token ? tokenExpiresAt(this.#token) : null;
    if (expiresAt === null) return;
    const delay = Math.max(expiresAt - TOKEN_RENEW_BEFORE_MS - this.#now(), TOKEN_RENEW_MIN_GAP_MS);
    this.#renewTimer = this.#setTimeout(
      () => {
        this.#renewTimer = undefined;
        void (async () => {
          const old = this.#token;
          try {
            const fresh = await this.#getTokenFn({ refused: null });
            if (generation !== this.#generation) return;
            this.#token = fresh;
            if (fresh !== old) this.#command({ type: 'auth', token: fresh });
          } catch {
            // Keep the old token; the server closes 4401 when it runs out, and we ask again then.
          }
          if (generation === this.#generation) this.#armRenewal(generation);
        })();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  async #fetchJson(path: string, token: string): Promise<unknown> {
    const fetchFn = this.#fetch ?? (globalThis.fetch as unknown as FetchLike | undefined);
    if (!fetchFn) throw new Error('No fetch implementation: pass options.fetch.');
    const res = await fetchFn(this.#baseUrl + path, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) throw new HttpError(res.status);
    return res.json();
  }

  async #fetchStatus(token: string): Promise<StatusResponse> {
    const parsed = StatusResponse.safeParse(await this.#fetchJson('/live-chat/status', token));
    if (!parsed.success) throw new Error('Unexpected /live-chat/status answer.');
    return parsed.data;
  }

  /**
   * After a resume, brings the counts of messages already shown up to date (likes, winners), which `since` does
   * not bring, and drops those deleted meanwhile (the server replays the latest 100 deletions after `init` too;
   * this page also covers older ones).
   */
  async #refreshShown(generation: number, sessionId: number): Promise<void> {
    try {
      const limit = this.#snap.status?.settings.history_limit ?? 100;
      const body = await this.#fetchJson(
        `/live-chat/messages?session_id=${sessionId}&limit=${limit}`,
        await this.#currentToken(),
      );
      const page = HistoryResponse.safeParse(body);
      if (!page.success || generation !== this.#generation || this.#sessionId !== sessionId) return;
      const fresh = new Map(page.data.messages.map((m) => [m.id, m]));
      const first = page.data.messages[0]?.id ?? Number.POSITIVE_INFINITY;
      const last = page.data.messages.at(-1)?.id ?? 0;
      this.#update((d) => {
        d.messages = d.messages.flatMap((m) => {
          const f = fresh.get(m.id);
          if (f) {
            const liked = f.liked_by_me ?? m.liked_by_me;
            if (f.likes === m.likes && f.is_winner === m.is_winner && liked === m.liked_by_me) return [m];
            return [{ ...m, likes: f.likes, is_winner: f.is_winner, liked_by_me: liked }];
          }
          return m.id > first && m.id < last ? [] : [m];
        });
      });
    } catch {
      // Best effort: live updates correct the counts anyway.
    }
  }

  #wsBase(): string {
    return this.#baseUrl.replace(/^http(s?):/i, 'ws$1:');
  }

  // ------------------------------------------------------------------ incoming

  #onFrame(data: unknown): void {
    this.#lastFrameAt = this.#now();
    if (typeof data !== 'string') {
      this.#update((d) => d.invalidEvents++);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      this.#update((d) => d.invalidEvents++);
      return;
    }
    // One snapshot for a whole batch frame: React renders once.
    this.#update((d) => {
      for (const raw of Array.isArray(parsed) ? parsed : [parsed]) {
        const event = ServerEventParser.safeParse(raw);
        if (event.success) this.#apply(d, event.data);
        else d.invalidEvents++;
      }
    });
  }

  #apply(d: Draft, event: ServerEvent): void {
    switch (event.type) {
      case 'init':
        this.#onInit(d, event);
        return;
      case 'new_message':
        if (event.message.session_id !== this.#sessionId) return;
        this.#insert(d, [event.message]);
        return;
      case 'session_like_update':
        if (event.session_id === this.#sessionId) d.totalLikes = event.total_likes;
        return;
      case 'viewer_count_update':
        if (event.session_id === this.#sessionId) d.viewerCount = event.viewer_count;
        return;
      case 'message_like_update':
        d.messages = d.messages.map((m) =>
          m.id === event.message_id && m.likes !== event.likes ? { ...m, likes: event.likes } : m,
        );
        return;
      case 'message_deleted':
        if (event.session_id === this.#sessionId)
          d.messages = d.messages.filter((m) => m.id !== event.message_id);
        return;
      case 'winner_update': {
        if (event.session_id !== this.#sessionId) return;
        const winners = new Set(event.user_ids);
        d.messages = d.messages.map((m) =>
          m.is_winner === winners.has(m.user_id) ? m : { ...m, is_winner: winners.has(m.user_id) },
        );
        if (d.you) d.you = { ...d.you, is_winner: winners.has(d.you.user_id) };
        return;
      }
      case 'chat_closed':
        this.#stopLiveTimers();
        d.state = 'closed';
        d.closed = {
          reason: event.reason,
          opensAt: null,
          closesAt: d.session?.ends_at ?? null,
        };
        this.#needStatus = true;
        this.#failAllPending(d, 'chat_closed', 'The chat closed before this message was sent.');
        return;
      case 'resync_required':
        // The server cannot resume from our position (another history, or too far behind): a fresh `init`
        // with recent history follows, and it replaces what we show.
        this.#resync = true;
        this.#epoch = event.epoch;
        return;
      case 'pong':
        return;
      case 'error': {
        const info: ChatErrorInfo = {
          code: event.code,
          message: event.message,
          ...(event.retry_after_ms !== undefined ? { retry_after_ms: event.retry_after_ms } : {}),
          at: this.#now(),
        };
        if (event.client_msg_id && d.pending.some((p) => p.client_msg_id === event.client_msg_id)) {
          this.#fail(d, event.client_msg_id, info);
        } else {
          // Perhaps a heart (another tab of this user used the limit): no more until the server says.
          if (event.code === 'rate_limited' && event.retry_after_ms !== undefined)
            this.#heartsPausedUntil = Math.max(this.#heartsPausedUntil, this.#now() + event.retry_after_ms);
          d.error = info;
          if (!event.client_msg_id) this.#recheckLikes();
        }
        return;
      }
    }
  }

  #onInit(d: Draft, event: Extract<ServerEvent, { type: 'init' }>): void {
    const resumed = this.#resumeSince !== undefined && !this.#resync && event.session.id === this.#sessionId;
    this.#resync = false;
    this.#epoch = event.epoch;
    if (!resumed) {
      this.#sessionId = event.session.id;
      this.#lastId = 0;
      d.messages = [];
    }
    d.session = event.session;
    d.you = event.you;
    d.viewerCount = event.viewer_count;
    d.totalLikes = event.total_likes;
    d.state = 'open';
    d.closed = null;
    d.reconnectAt = null;
    d.attempt = 0;
    if (d.error && JOIN_ERRORS.has(d.error.code)) d.error = null;
    this.#refusedToken = null;
    this.#insert(d, event.messages);
    this.#hadInit = true;
    this.#refusedSession = null;
    const generation = this.#generation;
    this.#armRenewal(generation);
    this.#armHeartbeat(generation);
    // Whatever is still pending was not stored (the init above would have confirmed it): send it now.
    for (const p of d.pending) {
      if (p.status === 'pending') this.#transmit(p);
    }
    if (resumed && d.messages.length > event.messages.length) {
      void this.#refreshShown(generation, event.session.id);
    }
  }

  /** Adds stored messages in id order, skipping those already there; confirms own pending ones. */
  #insert(d: Draft, incoming: readonly ChatMessage[]): void {
    if (incoming.length === 0) return;
    let list = d.messages as ChatItem[];
    const you = d.you?.user_id;
    for (const m of incoming) {
      if (m.session_id !== this.#sessionId) continue;
      // Live messages come in id order: the common case appends without a search.
      const newest = list.at(-1);
      const at = newest === undefined || newest.id < m.id ? list.length : sortedIndex(list, m.id);
      if (list[at]?.id !== m.id) {
        if (!this.#draftOwnsMessages) {
          list = [...list];
          d.messages = list;
          this.#draftOwnsMessages = true;
        }
        // The message is the schema check's output (zod builds a new object), ours alone: an absent `liked_by_me`
        // is filled in on it rather than on a copy of it (a copy per message was about 40 % of this library's
        // cost per event, docs/BENCHMARKS.md item 22).
        if (m.liked_by_me === undefined) (m as { liked_by_me?: boolean }).liked_by_me = false;
        const item = m as ChatItem;
        if (at === list.length) list.push(item);
        else list.splice(at, 0, item);
      }
      if (m.id > this.#lastId) this.#lastId = m.id;
      if (m.client_msg_id !== undefined && m.user_id === you) {
        const cmid = m.client_msg_id;
        if (d.pending.some((p) => p.client_msg_id === cmid)) {
          d.pending = d.pending.filter((p) => p.client_msg_id !== cmid);
          this.#sentOnSocket.delete(cmid);
          this.#settle(cmid, { ok: true, message: list[at]! });
        }
      }
    }
    if (this.#draftOwnsMessages && list.length > this.#maxMessages)
      list.splice(0, list.length - this.#maxMessages);
    d.messages = list;
  }

  /**
   * A ping every `heartbeatMs`, and the socket taken for dead when nothing at all has come since the ping
   * `HEARTBEAT_TIMEOUT_MS` later. The check looks at frames since the ping, not at the time since the last frame:
   * a hidden tab runs timers late (Chrome: about once a minute), and a late check must not drop a socket whose
   * pong came in time (message events are not held back).
   */
  #armHeartbeat(generation: number): void {
    if (this.#heartbeatMs <= 0) return;
    const deadline = Math.min(HEARTBEAT_TIMEOUT_MS, this.#heartbeatMs);
    const ping = () => {
      this.#heartbeatTimer = undefined;
      if (generation !== this.#generation || !this.#ws) return;
      const sentAt = this.#now();
      this.#command({ type: 'ping' });
      this.#heartbeatTimer = this.#setTimeout(() => check(sentAt), deadline);
    };
    const check = (sentAt: number) => {
      this.#heartbeatTimer = undefined;
      if (generation !== this.#generation || !this.#ws) return;
      if (this.#lastFrameAt < sentAt) {
        // Nothing came back since the ping: the connection is dead even if the OS has not noticed.
        const ws = this.#ws;
        this.#generation++;
        this.#ws = null;
        closeQuietly(ws, 4000, 'heartbeat timeout');
        this.#onClose(1006, 'heartbeat timeout');
        return;
      }
      this.#heartbeatTimer = this.#setTimeout(ping, this.#heartbeatMs - deadline);
    };
    this.#heartbeatTimer = this.#setTimeout(ping, this.#heartbeatMs);
  }

  // ------------------------------------------------------------------ outgoing

  #canSend(): boolean {
    // Inside an update (e.g. resending after `init`) the draft holds the state that is about to be published.
    return this.#ws?.readyState === WS_OPEN && (this.#draft ?? this.#snap).state === 'open';
  }

  #command(command: ClientCommand): boolean {
    if (!this.#canSend()) return false;
    this.#ws!.send(JSON.stringify(command));
    return true;
  }

  #dispatchPending(p: PendingMessage): void {
    const state = this.#snap.state;
    if (state === 'open') this.#transmit(p);
    else if (state === 'closed' || state === 'stopped') {
      this.#update((d) => this.#fail(d, p.client_msg_id, closedError(this.#now())));
    }
    // connecting / reconnecting: sent right after the next init.
  }

  #transmit(p: PendingMessage): void {
    if (this.#sentOnSocket.has(p.client_msg_id)) return;
    const sent = this.#command({ type: 'message', message: p.message, client_msg_id: p.client_msg_id });
    if (sent) this.#sentOnSocket.add(p.client_msg_id);
  }

  #toggleLike(messageId: number, liked: boolean): boolean {
    const item = this.#snap.messages.find((m) => m.id === messageId);
    if (!item || item.liked_by_me === liked) return false;
    if (
      !this.#command(
        liked
          ? { type: 'like_message', message_id: messageId }
          : { type: 'unlike_message', message_id: messageId },
      )
    )
      return false;
    this.#likeSentAt = this.#now();
    this.#update((d) => {
      d.messages = d.messages.map((m) =>
        m.id === messageId ? { ...m, liked_by_me: liked, likes: Math.max(0, m.likes + (liked ? 1 : -1)) } : m,
      );
    });
    return true;
  }

  #waitFor(clientMsgId: string): Promise<SendResult> {
    return new Promise((resolve) => {
      const list = this.#waiters.get(clientMsgId) ?? [];
      list.push(resolve);
      this.#waiters.set(clientMsgId, list);
    });
  }

  #settle(clientMsgId: string, result: SendResult): void {
    const list = this.#waiters.get(clientMsgId);
    this.#waiters.delete(clientMsgId);
    for (const resolve of list ?? []) resolve(result);
  }

  #replacePending(p: PendingMessage): void {
    this.#update((d) => {
      d.pending = d.pending.map((x) => (x.client_msg_id === p.client_msg_id ? p : x));
    });
  }

  #fail(d: Draft, clientMsgId: string, error: ChatErrorInfo): void {
    d.pending = d.pending.map((p) =>
      p.client_msg_id === clientMsgId ? { ...p, status: 'failed', error } : p,
    );
    this.#sentOnSocket.delete(clientMsgId);
    this.#settle(clientMsgId, { ok: false, error });
  }

  #failAllPending(d: Draft, code: string, message: string): void {
    for (const p of d.pending) {
      if (p.status === 'pending') this.#fail(d, p.client_msg_id, { code, message, at: this.#now() });
    }
  }

  // ------------------------------------------------------------------ snapshots

  /** Applies `change` to a draft and publishes one new snapshot; nested calls publish once, at the end. */
  #update(change: (d: Draft) => unknown): void {
    if (this.#draft) {
      change(this.#draft);
      return;
    }
    const draft: Draft = { ...this.#snap };
    this.#draft = draft;
    this.#draftOwnsMessages = false;
    try {
      change(draft);
    } finally {
      this.#draft = null;
      this.#draftOwnsMessages = false;
    }
    if (shallowEqual(draft, this.#snap)) return;
    this.#snap = Object.freeze(draft);
    for (const listener of [...this.#listeners]) listener();
  }
}

type Draft = { -readonly [K in keyof ChatSnapshot]: ChatSnapshot[K] };

function closedError(at: number): ChatErrorInfo {
  return { code: 'chat_closed', message: 'The chat is not open right now.', at };
}

function sortedIndex(list: readonly ChatItem[], id: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function shallowEqual(a: object, b: object): boolean {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const key of Object.keys(ra)) if (ra[key] !== rb[key]) return false;
  return true;
}

function closeQuietly(ws: WebSocketLike, code: number, reason: string): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = () => {};
  try {
    ws.close(code, reason);
  } catch {
    // Already closing or never opened.
  }
}

import type { ChatMessage, SessionInfo, StatusResponse, You } from '../protocol/index.js';

/**
 * The part of a WebSocket the client uses. The browser's `WebSocket` and the `ws` package's both fit, so the
 * client runs in either without depending on DOM types.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // biome-ignore lint/suspicious/noExplicitAny: each implementation has its own event type; we read `data`, `code`, `reason`.
  onopen: ((event: any) => void) | null;
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onmessage: ((event: any) => void) | null;
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onclose: ((event: any) => void) | null;
  // biome-ignore lint/suspicious/noExplicitAny: see onopen
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of `fetch` the client uses. */
export type FetchLike = (
  url: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string },
) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

/**
 * - `idle`: not started.
 * - `connecting`: the first connection is being made (or retried before it ever opened).
 * - `open`: connected and live.
 * - `reconnecting`: the connection dropped; retrying with backoff, then resuming without gaps.
 * - `closed`: the chat window is not active; `closed.opensAt` says when the next one opens (the client
 *   reconnects by itself then). Messages already shown are kept.
 * - `stopped`: `stop()` was called, or the server refused us for good (forbidden, origin not allowed).
 */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' | 'stopped';

/** A message the server has stored. `liked_by_me` is always known on the client. */
export type ChatItem = Omit<ChatMessage, 'liked_by_me'> & { readonly liked_by_me: boolean };

export interface ChatErrorInfo {
  readonly code: string;
  readonly message: string;
  readonly retry_after_ms?: number;
  /** Local time (ms) the error arrived; with `retry_after_ms` it gives the moment to retry. */
  readonly at: number;
}

/** A message this client sent that the server has not confirmed (yet), or refused. */
export interface PendingMessage {
  readonly client_msg_id: string;
  readonly message: string;
  readonly created_at: string;
  readonly status: 'pending' | 'failed';
  readonly error: ChatErrorInfo | null;
}

export interface ClosedInfo {
  /** `window_ended`: the window just ended; `not_active`: between windows; `disabled`: chat turned off. */
  readonly reason: 'window_ended' | 'disabled' | 'not_active';
  readonly opensAt: string | null;
  readonly closesAt: string | null;
}

/** An immutable picture of the chat; a new object after every change (fits React's useSyncExternalStore). */
export interface ChatSnapshot {
  readonly state: ConnectionState;
  /** The last `/live-chat/status` answer. */
  readonly status: StatusResponse | null;
  /** Server clock minus local clock, from the last status (for countdowns that agree with the server). */
  readonly clockOffsetMs: number;
  readonly session: SessionInfo | null;
  readonly you: You | null;
  /** Stored messages, oldest first, by id, without duplicates. */
  readonly messages: readonly ChatItem[];
  /** Own messages not yet confirmed, or refused, in the order they were sent. */
  readonly pending: readonly PendingMessage[];
  readonly viewerCount: number;
  readonly totalLikes: number;
  /** Set in the `closed` state. */
  readonly closed: ClosedInfo | null;
  /** When the next connection attempt is due (local ms), while connecting, reconnecting or closed. */
  readonly reconnectAt: number | null;
  readonly attempt: number;
  /** The last error not tied to a sent message (a refused heart, a refused token, …). */
  readonly error: ChatErrorInfo | null;
  /** Server events that failed their schema and were ignored. */
  readonly invalidEvents: number;
}

export type SendResult =
  | { readonly ok: true; readonly message: ChatItem }
  | { readonly ok: false; readonly error: ChatErrorInfo };

export interface BackoffOptions {
  /** First delay (ms). Default 500. */
  initialMs: number;
  /** Longest delay (ms). Default 15000. */
  maxMs: number;
  /** Growth per attempt. Default 2. */
  factor: number;
  /** Share of each delay taken off at random, 0..1. Default 0.5. */
  jitter: number;
}

export interface ChatClientOptions {
  /** Where draw-chat runs, e.g. `https://chat.example.com` (absolute). */
  baseUrl: string;
  /**
   * The viewer's JWT. Called at start, after a 4401 close (or an HTTP 401), and shortly before the current token
   * expires. After a refusal `refused` is the token the server refused: return another one (a source that caches
   * tokens must not hand that one out again).
   */
  getToken: (context: { refused: string | null }) => string | Promise<string>;
  /** Join this session instead of the active one from `/live-chat/status`. */
  sessionId?: number;
  /** WebSocket constructor; default `globalThis.WebSocket` (pass `ws` in Node.js before 22). */
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
  /** Ask for array frames (`&batch=1`). Default true. */
  batch?: boolean;
  backoff?: Partial<BackoffOptions>;
  /** App-level ping interval (ms) that detects dead connections; 0 turns it off. Default 25000. */
  heartbeatMs?: number;
  /** Most messages kept in memory (oldest dropped). Default 500. */
  maxMessages?: number;
  random?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  now?: () => number;
}

/**
 * The draw-chat client library: speaks the WebSocket protocol (SPEC §5) with reconnect and resume, in the
 * browser and in Node.js. Used by the React widget, the tests and the load generator.
 */

export type { ChatMessage, SessionInfo, StatusResponse, You } from '../protocol/index.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export { ChatClient } from './chat-client.js';
export { randomId, tokenExpiresAt } from './token.js';
export type {
  BackoffOptions,
  ChatClientOptions,
  ChatErrorInfo,
  ChatItem,
  ChatSnapshot,
  ClosedInfo,
  ConnectionState,
  FetchLike,
  PendingMessage,
  SendResult,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';

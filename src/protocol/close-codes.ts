/** WebSocket close codes used by draw-chat (SPEC §5). Never write the numbers inline elsewhere. */
export const CloseCode = {
  /** Server is shutting down; reconnect (with `since`) to another node or later. */
  GOING_AWAY: 1001,
  /** Text frame that is not valid UTF-8 (set by the WebSocket library). */
  INVALID_PAYLOAD: 1007,
  /** Policy violation: the handshake's Origin is not allowed, or an abusive client (floods, refusals). */
  POLICY: 1008,
  /** A frame or message larger than `LIVE_CHAT_MAX_FRAME_BYTES`. */
  TOO_LARGE: 1009,
  /** The handshake failed on the server (the database away), or the signing keys cannot be fetched; retry later. */
  INTERNAL_ERROR: 1011,
  /** Token missing, malformed, invalid or expired (also when it expires on an open socket). */
  UNAUTHORIZED: 4401,
  /** Authenticated but not allowed. */
  FORBIDDEN: 4403,
  /** No such session. */
  NOT_FOUND: 4404,
  /** The socket did not keep up with the room (send buffer over its limit); reconnect with `since`. */
  SLOW_CONSUMER: 4408,
  /** The session's chat window is not active, or it just closed; the chat is disabled. */
  CHAT_CLOSED: 4409,
  /** Too many open connections for this user. */
  TOO_MANY_CONNECTIONS: 4429,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * One registry of coded errors: the `code` on the wire (HTTP `error.code` and WebSocket `error` events),
 * the HTTP status it maps to, and the default human message. docs/API.md lists the same table.
 */
export const ErrorCodes = {
  bad_request: { status: 400, message: 'The request is malformed or fails its schema.' },
  invalid_message: { status: 400, message: 'The message is empty or contains control characters.' },
  message_too_long: { status: 400, message: 'The message is longer than the maximum length.' },
  unauthorized: { status: 401, message: 'A valid bearer token is required.' },
  forbidden: { status: 403, message: 'You are not allowed to do this.' },
  not_found: { status: 404, message: 'Not found.' },
  chat_closed: { status: 409, message: 'The chat is not open right now.' },
  chat_disabled: { status: 503, message: 'The chat is turned off.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  uri_too_long: { status: 414, message: 'A path parameter is longer than 300 characters.' },
  unsupported_media_type: { status: 415, message: 'Send the request body as application/json.' },
  // Refused by Node's HTTP parser before any route: the request's headers did not arrive in time (slowloris), or
  // were over 16 KiB.
  request_timeout: { status: 408, message: 'The request did not arrive in time.' },
  headers_too_large: { status: 431, message: 'The request headers are over 16 KiB.' },
  rate_limited: { status: 429, message: 'Too many requests; retry later.' },
  too_many_connections: { status: 429, message: 'Too many open connections for this user.' },
  not_ready: { status: 503, message: 'A dependency is not reachable.' },
  // Issue 6: a write that failed because the database is away (restart, failover, network). Retryable: the answer
  // carries `retry_after_ms`, and a retry with the same `client_msg_id` can never store the message twice.
  unavailable: { status: 503, message: 'The database is not reachable right now; retry shortly.' },
  internal_error: { status: 500, message: 'Something went wrong on our side.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

export const ERROR_CODE_LIST = Object.keys(ErrorCodes) as ErrorCode[];

/** An error that carries its wire code. Thrown by domain and service code, mapped at the transport edge. */
export class ChatError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message?: string, options?: { retryAfterMs?: number }) {
    super(message ?? ErrorCodes[code].message);
    this.name = 'ChatError';
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }

  get status(): number {
    return ErrorCodes[this.code].status;
  }
}

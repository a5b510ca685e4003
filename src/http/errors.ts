import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { ChatError, type ErrorCode, ErrorCodes } from '../protocol/errors.js';
import { ErrorBody } from '../protocol/http.js';
import { isStoreUnavailable, UNAVAILABLE_RETRY_MS } from '../store/errors.js';
import { AuthError } from './auth/verifier.js';

/** The JSON body of every HTTP error (SPEC §4). */
export function errorBody(code: ErrorCode, message?: string, retryAfterMs?: number) {
  return {
    error: {
      code,
      message: message ?? ErrorCodes[code].message,
      ...(retryAfterMs !== undefined ? { retry_after_ms: retryAfterMs } : {}),
    },
  };
}

export function sendError(reply: FastifyReply, code: ErrorCode, message?: string, retryAfterMs?: number) {
  if (retryAfterMs !== undefined) reply.header('retry-after', Math.max(1, Math.ceil(retryAfterMs / 1000)));
  return reply.code(ErrorCodes[code].status).send(errorBody(code, message, retryAfterMs));
}

/** Maps every error to a coded response; nothing a client sends can produce an uncoded 500. */
export function errorHandler(onError: (code: ErrorCode) => void) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const respond = (code: ErrorCode, message?: string, retryAfterMs?: number) => {
      onError(code);
      return sendError(reply, code, message, retryAfterMs);
    };
    if (err instanceof ChatError) return respond(err.code, err.message, err.retryAfterMs);
    if (err instanceof AuthError) return respond('unauthorized');
    if (isStoreUnavailable(err)) {
      // Issue 6: a database outage is a retryable 503, not a 500; one short line, not a stack per request.
      request.log.warn({ reason: err.message, code: err.code }, 'database unavailable');
      return respond('unavailable', undefined, UNAVAILABLE_RETRY_MS);
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const first = err.validation[0];
      const where = first?.instancePath ? ` at ${first.instancePath}` : '';
      return respond(
        'bad_request',
        `Invalid ${err.validationContext ?? 'request'}${where}: ${first?.message ?? 'invalid'}`,
      );
    }
    if (isResponseSerializationError(err)) {
      request.log.error({ err }, 'response does not match its schema');
      return respond('internal_error');
    }
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return respond('payload_too_large');
      case 'FST_ERR_MAX_PARAM_LENGTH':
        return respond('uri_too_long');
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return respond('unsupported_media_type');
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return respond('bad_request', err.message);
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      // Fastify's own client errors (bad JSON and the like).
      return respond(err.statusCode === 404 ? 'not_found' : 'bad_request', err.message);
    }
    request.log.error({ err }, 'unhandled error');
    return respond('internal_error');
  };
}

/**
 * The error answers a route lists in the OpenAPI document, all in SPEC §4's shape. Every route may answer 503
 * (`not_ready` while the node drains; `unavailable` while the database or the signing keys are away;
 * `chat_disabled` on writes); the rest are the route's own, listed by status.
 */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorBody> {
  const out: Record<number, typeof ErrorBody> = {};
  // Integer keys list in ascending order whatever the order they were set in.
  for (const s of [...statuses, 503]) out[s] = ErrorBody;
  return out;
}

/**
 * What Node's HTTP parser refuses before Fastify sees a request (headers over 16 KiB, a malformed request line,
 * two Content-Lengths, a request that did not arrive in time) is answered on the raw socket, with the same coded
 * body as everything else (SPEC §4) instead of Fastify's own.
 */
export function clientErrorHandler(onError: (code: ErrorCode) => void) {
  return (err: Error & { code?: string }, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const code: ErrorCode =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'request_timeout'
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? 'headers_too_large'
          : 'bad_request';
    onError(code);
    const body = JSON.stringify(errorBody(code));
    const { status } = ErrorCodes[code];
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `Content-Type: application/json; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(err);
  };
}

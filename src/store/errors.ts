/**
 * Which store failures mean "the database is away right now" (a restart, a failover, a dropped network path)
 * rather than "this request is wrong". Those are answered with the retryable `unavailable` code (HTTP 503,
 * `retry_after_ms`) instead of `internal_error` (issue 6: a PostgreSQL restart must look like a short outage to
 * clients, not like a bug).
 */

/** How long a client should wait before retrying a write refused as `unavailable`. */
export const UNAVAILABLE_RETRY_MS = 1000;

// Socket-level failures of the pg driver (and of DNS) while connecting or mid-query.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// SQLSTATE: class 08 connection exception; 57P01-57P03 admin/crash shutdown and "cannot connect now" (a server
// starting up or shutting down); 57014 statement timeout; 53300 too many connections; 40001/40P01 are not here
// (they are retried by nobody and mean contention, not absence).
const PG_STATES = /^(08...|57P0[123]|57014|53300)$/;

// SQLite: the writer lock stayed busy past busy_timeout, or the disk failed; both are the store being away.
const SQLITE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN)/;

// pg and pg-pool report some conditions only by message.
const MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Connection ended|Client has encountered a connection error|Client was closed and is not queryable|the database system is (starting up|shutting down|in recovery mode)/i;

/** True when `err` (or an error it wraps) says the database cannot be reached right now. */
export function isStoreUnavailable(err: unknown, depth = 0): boolean {
  if (depth > 4 || typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (
    typeof code === 'string' &&
    (NETWORK_CODES.has(code) || PG_STATES.test(code) || SQLITE_CODES.test(code))
  )
    return true;
  if (err instanceof Error && MESSAGES.test(err.message)) return true;
  // Node reports a refused dual-stack connect as an AggregateError of the per-address errors.
  if (err instanceof AggregateError && err.errors.some((e) => isStoreUnavailable(e, depth + 1))) return true;
  return isStoreUnavailable((err as { cause?: unknown }).cause, depth + 1);
}

// Failures that mean the transaction never reached the database: no connection could be made (refused, no route,
// no such host, the server starting up, shutting down or full), or SQLite did not take its writer lock or could not
// open the file. Not a connection lost mid-transaction, nor a timeout: the COMMIT may have happened then.
const UNREACHED_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const UNREACHED_PG_STATES = /^(08001|08004|57P03|53300)$/;
const UNREACHED_SQLITE_CODES = /^SQLITE_(BUSY|LOCKED|CANTOPEN)/;
const UNREACHED_MESSAGES =
  /timeout exceeded when trying to connect|Client was closed and is not queryable|the database system is (starting up|shutting down|in recovery mode)/i;

/**
 * True when `err` (or an error it wraps) says the transaction never reached the database, so nothing of it can
 * have been committed (a subset of `isStoreUnavailable`).
 */
export function isStoreUnreached(err: unknown, depth = 0): boolean {
  if (depth > 4 || typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (
    typeof code === 'string' &&
    (UNREACHED_NETWORK_CODES.has(code) || UNREACHED_PG_STATES.test(code) || UNREACHED_SQLITE_CODES.test(code))
  )
    return true;
  if (err instanceof Error && UNREACHED_MESSAGES.test(err.message)) return true;
  if (
    err instanceof AggregateError &&
    err.errors.length > 0 &&
    err.errors.every((e) => isStoreUnreached(e, depth + 1))
  )
    return true;
  return isStoreUnreached((err as { cause?: unknown }).cause, depth + 1);
}

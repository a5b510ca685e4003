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

interface ErrorClass {
  network: ReadonlySet<string>;
  pgStates: RegExp;
  sqlite: RegExp;
  messages: RegExp;
  /** Of an AggregateError's errors (a dual-stack connect reports one per address): any, or every one. */
  aggregate: 'some' | 'every';
}

/** True when `err`, or an error it wraps (`cause`, AggregateError), is of the class. */
function isOfClass(err: unknown, c: ErrorClass, depth = 0): boolean {
  if (depth > 4 || typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (c.network.has(code) || c.pgStates.test(code) || c.sqlite.test(code)))
    return true;
  if (err instanceof Error && c.messages.test(err.message)) return true;
  if (
    err instanceof AggregateError &&
    err.errors.length > 0 &&
    err.errors[c.aggregate]((e) => isOfClass(e, c, depth + 1))
  )
    return true;
  return isOfClass((err as { cause?: unknown }).cause, c, depth + 1);
}

const UNAVAILABLE: ErrorClass = {
  network: NETWORK_CODES,
  pgStates: PG_STATES,
  sqlite: SQLITE_CODES,
  messages: MESSAGES,
  aggregate: 'some',
};

/** True when `err` (or an error it wraps) says the database cannot be reached right now. */
export function isStoreUnavailable(err: unknown): boolean {
  return isOfClass(err, UNAVAILABLE);
}

// Failures that mean the transaction never reached the database: no connection could be made (refused, no route,
// no such host, the server starting up, shutting down or full), or SQLite did not take its writer lock or could not
// open the file. Not a connection lost mid-transaction, nor a timeout: the COMMIT may have happened then.
const UNREACHED: ErrorClass = {
  network: new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']),
  pgStates: /^(08001|08004|57P03|53300)$/,
  sqlite: /^SQLITE_(BUSY|LOCKED|CANTOPEN)/,
  messages:
    /timeout exceeded when trying to connect|Client was closed and is not queryable|the database system is (starting up|shutting down|in recovery mode)/i,
  aggregate: 'every',
};

/**
 * True when `err` (or an error it wraps) says the transaction never reached the database, so nothing of it can
 * have been committed (a subset of `isStoreUnavailable`).
 */
export function isStoreUnreached(err: unknown): boolean {
  return isOfClass(err, UNREACHED);
}

/**
 * An error as one line: its message, else (Node reports a refused connect to every address of `localhost` as an
 * AggregateError without one) its parts' messages, else its code.
 */
export function errorLine(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.message) return err.message;
  if (err instanceof AggregateError && err.errors.length > 0) {
    return [...new Set(err.errors.map((e: unknown) => errorLine(e)))].join('; ');
  }
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err.name;
}

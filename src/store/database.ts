import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { sqlitePathOf } from '../config/settings.js';
import type { Database, Dialect } from './schema.js';

const INT8_OID = 20;
const TIMESTAMPTZ_OID = 1184;

/** PostgreSQL's text for a timestamptz in a UTC session: `2026-11-26 18:42:01.123456+00` (fraction optional). */
const PG_UTC_TEXT = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/;

/**
 * A timestamptz as the text the wire writes (ISO 8601, UTC, milliseconds: what `Date#toISOString` makes), taken
 * from PostgreSQL's own text: our sessions run in UTC (see `openDatabase`). node-postgres' parser built a Date
 * with a regex and the wire formatted it back, about 3 µs a row, a tenth of the CPU of a history page. Fractions
 * are cut to milliseconds, as that parser's Date did. Any other text (another time zone, BC, a year past 9999)
 * goes to that parser.
 */
export function timestamptzText(value: string): string | Date {
  const m = PG_UTC_TEXT.exec(value);
  if (!m) return defaultTimestamptz(value) as Date;
  const fraction = m[3] ?? '';
  return `${m[1]}T${m[2]}.${fraction.length >= 3 ? fraction.slice(0, 3) : fraction.padEnd(3, '0')}Z`;
}
const defaultTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID, 'text');

// int8 (bigserial ids, bigint counts, COUNT(*)) as a JS number instead of a string, and timestamptz as ISO text
// (`timestamptzText`). Scoped to our pool, so other pg users in the process keep the defaults. Ids and counts stay
// far below 2^53.
const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    format === 'binary'
      ? pg.types.getTypeParser(oid, format)
      : oid === INT8_OID
        ? (value: string) => Number(value)
        : oid === TIMESTAMPTZ_OID
          ? timestamptzText
          : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

/** An open database and the dialect it speaks. */
export interface OpenDatabase {
  db: Kysely<Database>;
  dialect: Dialect;
}

/**
 * Opens `sqlite:<path>` (relative or absolute; the parent directory is created; `sqlite::memory:` for a
 * throw-away database) or `postgres://…` / `postgresql://…` (a pool of 10 connections).
 */
export function openDatabase(url: string): OpenDatabase {
  const path = sqlitePathOf(url);
  if (path !== undefined) {
    if (path === '')
      throw new Error('DATABASE_URL sqlite: needs a file path, e.g. sqlite:./data/live-chat.db');
    const memory = path === ':memory:';
    if (!memory) mkdirSync(dirname(resolve(path)), { recursive: true });
    const sqlite = new SqliteDatabase(memory ? ':memory:' : resolve(path));
    sqlite.pragma('journal_mode = WAL');
    // FULL: an acknowledged message survives a power loss, not only a crash (SPEC §6).
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    return {
      db: new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) }),
      dialect: 'sqlite',
    };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    // Options given in the URL (`?options=-c …`) are kept; ours come last, so they win.
    const urlOptions = URL.canParse(url) ? new URL(url).searchParams.get('options') : null;
    const pool = new pg.Pool({
      connectionString: url,
      max: 10,
      types: pgTypes,
      // Issue 6: an outage must reach the client as a retryable `unavailable` within 5 s, never as a hang.
      // A connection attempt to a dead or unreachable server gives up after 2 s (pg's default waits forever).
      connectionTimeoutMillis: 2_000,
      // The server cancels any statement after 5 s (a lock or I/O stall); the client gives up 1 s later when
      // the server itself is gone mid-statement (a half-open TCP path), and the pool drops that connection.
      statement_timeout: 5_000,
      query_timeout: 6_000,
      keepAlive: true,
      // Acknowledged means durable (SPEC §6): a commit returns only once its WAL is flushed, whatever the
      // server's or database's default for synchronous_commit says.
      // Times come back in UTC, as the text `timestamptzText` turns into the wire's without a Date.
      options: [urlOptions, '-c synchronous_commit=on -c TimeZone=UTC'].filter(Boolean).join(' '),
    });
    // An idle connection that drops emits 'error' on the pool; unhandled it would kill the process. The next
    // query gets a fresh connection or reports the failure itself.
    pool.on('error', () => {});
    // A connection the server terminates while it is checked out but between two statements (a restart sends
    // FATAL 57P01 to every backend) emits 'error' on the client, where pg-pool listens only while it is idle:
    // without this listener that error is an uncaught exception that kills the process. Found by the hardening
    // suite (issue 6, H-FAULT-05). The statement that next uses the client fails instead (answered
    // `unavailable`), and pg-pool discards the client when it is released.
    pool.on('connect', (client) => client.on('error', () => {}));
    return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), dialect: 'postgres' };
  }
  throw new Error('DATABASE_URL must be sqlite:<path> or postgres://…');
}

/** Prepared statements kept per SQL text: Kysely prepares every query again, which costs more than a small read. */
const STATEMENT_CACHE = 256;

/**
 * better-sqlite3 behind Kysely, with its statements reused. A statement is only busy while it is iterated, which
 * the store never does (Kysely's `stream()` is unused), so sharing one statement between queries is safe. The
 * cache is bounded (queries with `IN (…)` lists of many lengths have many texts): oldest out first.
 */
function withStatementCache(sqlite: SqliteDatabase.Database): {
  prepare(sql: string): SqliteDatabase.Statement;
  close(): void;
} {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    prepare(sql) {
      let stmt = cache.get(sql);
      if (stmt) return stmt;
      stmt = sqlite.prepare(sql);
      if (cache.size >= STATEMENT_CACHE) cache.delete(cache.keys().next().value!);
      cache.set(sql, stmt);
      return stmt;
    },
    close() {
      cache.clear();
      sqlite.close();
    },
  };
}

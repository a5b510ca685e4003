import Database from 'better-sqlite3';
import pg from 'pg';
import { sqlitePathOf } from '../../src/config/settings.js';
import { createChatStore } from '../../src/store/kysely-store.js';
import { benchWindow } from './targets.js';

/**
 * A session with `count` messages, written straight into the database (not through the server: a million
 * messages through the API would take the whole suite). The schema comes from draw-chat's own migrations and
 * the session row from its own store, so the server started afterwards (same `drawTime`) finds its session.
 */
export async function seedHistory(databaseUrl: string, drawTime: number, count: number): Promise<number> {
  const store = createChatStore(databaseUrl);
  let sessionId: number;
  try {
    await store.migrate();
    sessionId = (await store.ensureSession(benchWindow(drawTime))).id;
  } finally {
    await store.close();
  }
  const start = Date.now() - count;
  const sqlitePath = sqlitePathOf(databaseUrl);
  if (sqlitePath !== undefined) {
    const db = new Database(sqlitePath);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    const insert = db.prepare(
      `INSERT INTO live_chat_messages (session_id, user_id, username, profile_pic, is_host, message, client_msg_id, likes, created_at)
       VALUES (?, ?, ?, NULL, 0, ?, NULL, 0, ?)`,
    );
    const chunk = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        insert.run(
          sessionId,
          `seed-${i % 1000}`,
          `seed ${i % 1000}`,
          `history message number ${i}`,
          new Date(start + i).toISOString(),
        );
      }
    });
    for (let i = 0; i < count; i += 50_000) chunk(i, Math.min(count, i + 50_000));
    db.exec('ANALYZE');
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    return sessionId;
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO live_chat_messages (session_id, user_id, username, profile_pic, is_host, message, client_msg_id, likes, created_at)
       SELECT $1, 'seed-' || (g % 1000), 'seed ' || (g % 1000), NULL, false, 'history message number ' || g, NULL, 0,
              to_timestamp($2::double precision / 1000) + g * interval '1 millisecond'
       FROM generate_series(0, $3::int - 1) AS g`,
      [sessionId, start, count],
    );
    await client.query('VACUUM ANALYZE live_chat_messages');
    // As SQLite's WAL is checkpointed above: the seed's dirty pages are written now, not during the measurement.
    // (It did not explain PostgreSQL's 10–12 ms p99 at the end of two full suites, against 7.4 ms alone; see the
    // misses in docs/BENCHMARKS.md.)
    await client.query('CHECKPOINT');
  } finally {
    await client.end();
  }
  return sessionId;
}

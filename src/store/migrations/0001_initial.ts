import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../schema.js';

/** Column types that differ by dialect (see schema.ts for how the store reads them). */
function types(dialect: Dialect) {
  const pg = dialect === 'postgres';
  return {
    ts: pg ? ('timestamptz' as const) : ('text' as const),
    ref: pg ? ('bigint' as const) : ('integer' as const),
    bool: pg ? ('boolean' as const) : ('integer' as const),
    // Same text as `toISOString()`, so SQLite defaults sort with the values the store writes.
    now: pg ? sql`now()` : sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`,
    false: pg ? sql`false` : sql`0`,
  };
}

/** The initial schema: users, sessions, messages, likes, viewers, winners. */
export function initialMigration(dialect: Dialect): Migration {
  const t = types(dialect);
  const pg = dialect === 'postgres';

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('claim_name', 'text')
        .addColumn('claim_picture', 'text')
        .addColumn('profile_name', 'text')
        .addColumn('profile_pic', 'text')
        .addColumn('fallback_name', 'text', (c) => c.notNull())
        .addColumn('created_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addColumn('updated_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .execute();

      await db.schema
        .createTable('live_chat_sessions')
        // SQLite AUTOINCREMENT: ids are never reused, like a PostgreSQL identity.
        .addColumn('id', t.ref, (c) =>
          pg ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement(),
        )
        .addColumn('draw_time', t.ts, (c) => c.notNull().unique())
        .addColumn('starts_at', t.ts, (c) => c.notNull())
        .addColumn('ends_at', t.ts, (c) => c.notNull())
        .addColumn('is_active', t.bool, (c) => c.notNull().defaultTo(t.false))
        .addColumn('total_likes', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('write_seq', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addColumn('updated_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .execute();
      await db.schema
        .createIndex('live_chat_sessions_starts_at_idx')
        .on('live_chat_sessions')
        .column('starts_at')
        .execute();

      await db.schema
        .createTable('live_chat_messages')
        .addColumn('id', t.ref, (c) =>
          pg ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement(),
        )
        .addColumn('session_id', t.ref, (c) =>
          c.notNull().references('live_chat_sessions.id').onDelete('cascade'),
        )
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('profile_pic', 'text')
        .addColumn('is_host', t.bool, (c) => c.notNull().defaultTo(t.false))
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('client_msg_id', 'text')
        .addColumn('likes', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addColumn('deleted_at', t.ts)
        // NULL client_msg_ids never collide (NULLs are distinct in both dialects).
        .addUniqueConstraint('live_chat_messages_client_msg_uq', ['session_id', 'user_id', 'client_msg_id'])
        .execute();
      await db.schema
        .createIndex('live_chat_messages_session_id_idx')
        .on('live_chat_messages')
        .columns(['session_id', 'id'])
        .execute();
      // For the "messages in the last hour" monitoring query.
      await db.schema
        .createIndex('live_chat_messages_created_at_idx')
        .on('live_chat_messages')
        .column('created_at')
        .execute();

      await db.schema
        .createTable('live_chat_likes')
        .addColumn('message_id', t.ref, (c) =>
          c.notNull().references('live_chat_messages.id').onDelete('cascade'),
        )
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('session_id', t.ref, (c) =>
          c.notNull().references('live_chat_sessions.id').onDelete('cascade'),
        )
        .addColumn('created_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addPrimaryKeyConstraint('live_chat_likes_pk', ['message_id', 'user_id'])
        .execute();

      await db.schema
        .createTable('live_chat_viewers')
        .addColumn('session_id', t.ref, (c) =>
          c.notNull().references('live_chat_sessions.id').onDelete('cascade'),
        )
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('is_active', t.bool, (c) => c.notNull().defaultTo(t.false))
        .addColumn('first_seen_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addColumn('last_seen_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addColumn('disconnected_at', t.ts)
        .addPrimaryKeyConstraint('live_chat_viewers_pk', ['session_id', 'user_id'])
        .execute();

      await db.schema
        .createTable('live_chat_winners')
        .addColumn('session_id', t.ref, (c) =>
          c.notNull().references('live_chat_sessions.id').onDelete('cascade'),
        )
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('created_at', t.ts, (c) => c.notNull().defaultTo(t.now))
        .addPrimaryKeyConstraint('live_chat_winners_pk', ['session_id', 'user_id'])
        .execute();

      // Facts about this database itself; `epoch` names its history (a recreated database gets a new one).
      await db.schema
        .createTable('live_chat_meta')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },

    async down(db: Kysely<unknown>) {
      for (const table of [
        'live_chat_meta',
        'live_chat_winners',
        'live_chat_viewers',
        'live_chat_likes',
        'live_chat_messages',
        'live_chat_sessions',
        'users',
      ]) {
        await db.schema.dropTable(table).ifExists().execute();
      }
    },
  };
}

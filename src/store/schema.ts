import type { ColumnType, Generated } from 'kysely';

/*
 * Table types shared by both dialects. Where the dialects store a value differently the column type is the
 * union and the store converts at the edge:
 * - times: PostgreSQL `timestamptz` (read back as Date), SQLite ISO-8601 UTC text (read back as string);
 *   both are written as ISO-8601 strings (`toISOString()`).
 * - booleans: PostgreSQL `boolean`, SQLite integer 0/1.
 * - ids and bigint counts: numbers (the PostgreSQL pool parses int8 to number).
 */

/** A time column: written as an ISO-8601 UTC string, read as a Date (PostgreSQL) or that string (SQLite). */
export type Timestamp = ColumnType<Date | string, string, string>;
/** A nullable time column. */
export type NullableTimestamp = ColumnType<Date | string | null, string | null, string | null>;
/** A boolean column: `boolean` on PostgreSQL, 0/1 on SQLite. */
export type DbBool = ColumnType<boolean | number, boolean | number, boolean | number>;

/** The `users` table: the token's claims and the draw backend's profile are kept apart and resolved on read. */
export interface UsersTable {
  id: string;
  /** `name`/`nickname` from the latest token; null when it had neither. */
  claim_name: string | null;
  claim_picture: string | null;
  /** Set by the draw backend (`PUT /live-chat/users/{id}`). */
  profile_name: string | null;
  profile_pic: string | null;
  /** Email local part or `sub`, used when nothing better is known. */
  fallback_name: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** The `live_chat_sessions` table: one row per draw. */
export interface LiveChatSessionsTable {
  id: Generated<number>;
  draw_time: Timestamp;
  starts_at: Timestamp;
  ends_at: Timestamp;
  is_active: ColumnType<boolean | number, boolean | number | undefined, boolean | number>;
  total_likes: ColumnType<number, number | undefined, number>;
  /** Incremented by every write batch that locks the session row: orders counts published by several nodes. */
  write_seq: ColumnType<number, number | undefined, number>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** The `live_chat_messages` table. */
export interface LiveChatMessagesTable {
  id: Generated<number>;
  session_id: number;
  user_id: string;
  username: string;
  profile_pic: string | null;
  is_host: DbBool;
  message: string;
  client_msg_id: string | null;
  likes: ColumnType<number, number | undefined, number>;
  created_at: Timestamp;
  deleted_at: ColumnType<Date | string | null, string | null | undefined, string | null>;
}

/** The `live_chat_likes` table: one row per (message, user) like. */
export interface LiveChatLikesTable {
  message_id: number;
  user_id: string;
  session_id: number;
  created_at: Timestamp;
}

/** The `live_chat_viewers` table: presence per (session, user), for monitoring. */
export interface LiveChatViewersTable {
  session_id: number;
  user_id: string;
  is_active: DbBool;
  first_seen_at: Timestamp;
  last_seen_at: Timestamp;
  disconnected_at: NullableTimestamp;
}

/** The `live_chat_winners` table. */
export interface LiveChatWinnersTable {
  session_id: number;
  user_id: string;
  created_at: Timestamp;
}

/** Every table draw-chat stores, for `Kysely<Database>`. */
export interface Database {
  users: UsersTable;
  live_chat_sessions: LiveChatSessionsTable;
  live_chat_messages: LiveChatMessagesTable;
  live_chat_likes: LiveChatLikesTable;
  live_chat_viewers: LiveChatViewersTable;
  live_chat_winners: LiveChatWinnersTable;
  live_chat_meta: LiveChatMetaTable;
}

export interface LiveChatMetaTable {
  key: string;
  value: string;
}

export type Dialect = 'sqlite' | 'postgres';

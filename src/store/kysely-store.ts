import { randomUUID } from 'node:crypto';
import {
  type CompiledQuery,
  type Insertable,
  type Kysely,
  type OnConflictBuilder,
  type Selectable,
  sql,
} from 'kysely';
import { openDatabase } from './database.js';
import { migrateToLatest } from './migrations/index.js';
import type {
  Database,
  Dialect,
  LiveChatMessagesTable,
  LiveChatSessionsTable,
  UsersTable,
} from './schema.js';
import type {
  ChatStore,
  HistoryPage,
  HistoryPageQuery,
  NewMessage,
  SessionRecord,
  StoredMessage,
  UserClaimsInput,
  UserPreview,
  UserRecord,
  WriteBatch,
  WriteBatchResult,
} from './types.js';

type MessageRow = Selectable<LiveChatMessagesTable>;
type SessionRow = Selectable<LiveChatSessionsTable>;
type UserRow = Selectable<UsersTable>;

/** Rows per multi-row statement: well under both dialects' bound-parameter limits. */
const CHUNK = 500;

const iso = (ms: number): string => new Date(ms).toISOString();
const toMs = (value: Date | string): number => (value instanceof Date ? value.getTime() : Date.parse(value));
const toBool = (value: boolean | number): boolean => value === true || value === 1;

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A users row as token claims create it (the backend profile fields empty). */
function claimsRow(u: UserClaimsInput): Insertable<UsersTable> {
  const at = iso(u.at);
  return {
    id: u.id,
    claim_name: u.claimName,
    claim_picture: u.claimPicture,
    profile_name: null,
    profile_pic: null,
    fallback_name: u.fallbackName,
    created_at: at,
    updated_at: at,
  };
}

/** A user already stored takes the new claims (and `updated_at`); the backend profile stays. */
function updateClaims(oc: OnConflictBuilder<Database, 'users'>) {
  return oc.column('id').doUpdateSet((eb) => ({
    claim_name: eb.ref('excluded.claim_name'),
    claim_picture: eb.ref('excluded.claim_picture'),
    fallback_name: eb.ref('excluded.fallback_name'),
    updated_at: eb.ref('excluded.updated_at'),
  }));
}

function toUser(row: UserRow): UserRecord {
  // `||`, not `??`: an empty name or picture is as good as none.
  return {
    id: row.id,
    username: row.claim_name || row.profile_name || row.fallback_name || row.id,
    profilePic: row.claim_picture || row.profile_pic || null,
  };
}

/** What `previewUsersFromClaims` says of one user, given its stored row. */
function previewUser(input: UserClaimsInput, row: UserRow | undefined): UserPreview {
  const write =
    !row ||
    row.claim_name !== input.claimName ||
    row.claim_picture !== input.claimPicture ||
    row.fallback_name !== input.fallbackName;
  const at = iso(input.at);
  const after: UserRow = {
    id: input.id,
    claim_name: input.claimName,
    claim_picture: input.claimPicture,
    profile_name: row?.profile_name ?? null,
    profile_pic: row?.profile_pic ?? null,
    fallback_name: input.fallbackName,
    created_at: row?.created_at ?? at,
    updated_at: write ? at : row!.updated_at,
  };
  return { user: toUser(after), write };
}

function toSession(row: SessionRow): SessionRecord {
  return {
    id: Number(row.id),
    drawTime: toMs(row.draw_time),
    startsAt: toMs(row.starts_at),
    endsAt: toMs(row.ends_at),
    isActive: toBool(row.is_active),
    totalLikes: Number(row.total_likes),
  };
}

/** The text `iso` makes: SQLite's `created_at` is this text (written by `iso` or `strftime('%Y-%m-%dT%H:%M:%fZ')`). */
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function toMessage(row: MessageRow): StoredMessage {
  const at = row.created_at;
  const createdAt = toMs(at);
  return {
    id: Number(row.id),
    sessionId: Number(row.session_id),
    userId: row.user_id,
    username: row.username,
    profilePic: row.profile_pic,
    isHost: toBool(row.is_host),
    message: row.message,
    createdAt,
    createdAtText: typeof at === 'string' && ISO_MS.test(at) ? at : iso(createdAt),
    likes: Number(row.likes),
    clientMsgId: row.client_msg_id,
    ...(row.deleted_at === null ? {} : { deleted: true as const }),
  };
}

/** Whether `stored` is the row inserted for `input` (to pair RETURNING rows with inputs). */
function sameContent(stored: StoredMessage, input: NewMessage): boolean {
  return (
    stored.sessionId === input.sessionId &&
    stored.userId === input.userId &&
    stored.message === input.message &&
    // Stored with millisecond precision.
    stored.createdAt === Date.parse(iso(input.createdAt)) &&
    stored.username === input.username &&
    stored.profilePic === input.profilePic &&
    stored.isHost === input.isHost
  );
}

const idempotencyKey = (sessionId: number, userId: string, clientMsgId: string): string =>
  JSON.stringify([sessionId, userId, clientMsgId]);

/** `ChatStore` on Kysely, for SQLite (better-sqlite3) and PostgreSQL (pg). */
export class KyselyChatStore implements ChatStore {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  /** See `#usersByIds`: at most log2(CHUNK) + 1 entries (the sizes are powers of two, and CHUNK). */
  readonly #usersByIdsCache = new Map<number, CompiledQuery<UserRow>>();

  constructor(db: Kysely<Database>, dialect: Dialect) {
    this.db = db;
    this.dialect = dialect;
  }

  async migrate(): Promise<void> {
    await migrateToLatest(this.db, this.dialect);
  }

  async epoch(): Promise<string> {
    const read = () =>
      this.db.selectFrom('live_chat_meta').select('value').where('key', '=', 'epoch').executeTakeFirst();
    const existing = await read();
    if (existing) return existing.value;
    // Several nodes may start on a new database at once: the first insert wins, everyone reads it back.
    await this.db
      .insertInto('live_chat_meta')
      .values({ key: 'epoch', value: randomUUID() })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
    return (await read())!.value;
  }

  async lastMessageId(sessionId: number): Promise<number> {
    const row = await this.db
      .selectFrom('live_chat_messages')
      .select((eb) => eb.fn.max('id').as('last'))
      .where('session_id', '=', sessionId)
      .executeTakeFirst();
    return Number(row?.last ?? 0);
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  /** The dialect's boolean: `boolean` on PostgreSQL, 0/1 on SQLite (better-sqlite3 cannot bind booleans). */
  #bool(value: boolean): boolean | number {
    return this.dialect === 'postgres' ? value : value ? 1 : 0;
  }

  /**
   * Runs `fn` in one transaction. SQLite uses BEGIN IMMEDIATE: the write lock is taken (waiting up to
   * busy_timeout) before the first read, so a read-then-write transaction cannot fail with SQLITE_BUSY halfway.
   */
  async #transaction<T>(fn: (trx: Kysely<Database>) => Promise<T>): Promise<T> {
    if (this.dialect === 'postgres') return this.db.transaction().execute(fn);
    return this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const result = await fn(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (err) {
        // Some errors already ended the transaction; the original error is the one to report.
        await sql`rollback`.execute(conn).catch(() => {});
        throw err;
      }
    });
  }

  // --- users -------------------------------------------------------------------------------------------------

  async upsertUserFromClaims(input: UserClaimsInput): Promise<UserRecord> {
    const row = await this.db
      .insertInto('users')
      .values(claimsRow(input))
      .onConflict(updateClaims)
      .returningAll()
      .executeTakeFirstOrThrow();
    return toUser(row);
  }

  /**
   * `SELECT * FROM users WHERE id IN (…)` with `size` ids, compiled once per size: this read runs for every few
   * handshakes of new users, and building and compiling it each time cost more than SQLite took to run it.
   */
  #usersByIds(size: number): CompiledQuery<UserRow> {
    let query = this.#usersByIdsCache.get(size);
    if (!query) {
      const ids = Array.from({ length: size }, (_, i) => String(i));
      query = this.db.selectFrom('users').selectAll().where('id', 'in', ids).compile();
      this.#usersByIdsCache.set(size, query);
    }
    return query;
  }

  async previewUsersFromClaims(inputs: readonly UserClaimsInput[]): Promise<UserPreview[]> {
    const rows = new Map<string, UserRow>();
    for (const part of chunks([...new Set(inputs.map((u) => u.id))])) {
      // Padded to a power of two by repeating an id: a handful of statement texts, not one per list length.
      const size = Math.min(CHUNK, 2 ** Math.ceil(Math.log2(part.length)));
      const ids = part.concat(Array<string>(size - part.length).fill(part[0]!));
      const { rows: found } = await this.db.executeQuery<UserRow>({
        ...this.#usersByIds(size),
        parameters: ids,
      });
      for (const row of found) rows.set(row.id, row);
    }
    return inputs.map((input) => previewUser(input, rows.get(input.id)));
  }

  async #applyUsers(trx: Kysely<Database>, users: WriteBatch['users']): Promise<void> {
    if (users.length === 0) return;
    // One row per id (PostgreSQL's ON CONFLICT touches a row once per statement), in id order so that two
    // nodes' batches lock the rows they share in the same order.
    const latest = new Map(users.map((u) => [u.id, u]));
    const ordered = [...latest.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const part of chunks(ordered)) {
      await trx.insertInto('users').values(part.map(claimsRow)).onConflict(updateClaims).execute();
    }
  }

  async setUserProfile(
    id: string,
    profile: { username?: string; profilePic?: string | null },
    at: number,
  ): Promise<UserRecord> {
    const now = iso(at);
    const update: { profile_name?: string; profile_pic?: string | null; updated_at: string } = {
      updated_at: now,
    };
    if (profile.username !== undefined) update.profile_name = profile.username;
    if (profile.profilePic !== undefined) update.profile_pic = profile.profilePic;
    const row = await this.db
      .insertInto('users')
      .values({
        id,
        claim_name: null,
        claim_picture: null,
        profile_name: profile.username ?? null,
        profile_pic: profile.profilePic ?? null,
        // The backend may name a user before their first visit; the id is the last resort.
        fallback_name: id,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) => oc.column('id').doUpdateSet(update))
      .returningAll()
      .executeTakeFirstOrThrow();
    return toUser(row);
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  }

  // --- sessions ----------------------------------------------------------------------------------------------

  async ensureSession(input: { drawTime: number; startsAt: number; endsAt: number }): Promise<SessionRecord> {
    const drawTime = iso(input.drawTime);
    const existing = await this.db
      .selectFrom('live_chat_sessions')
      .selectAll()
      .where('draw_time', '=', drawTime)
      .executeTakeFirst();
    // The common case (window unchanged) reads only: no row version churn on PostgreSQL.
    if (existing) {
      const session = toSession(existing);
      if (session.startsAt === input.startsAt && session.endsAt === input.endsAt) return session;
    }
    const now = iso(Date.now());
    const row = await this.db
      .insertInto('live_chat_sessions')
      .values({
        draw_time: drawTime,
        starts_at: iso(input.startsAt),
        ends_at: iso(input.endsAt),
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc.column('draw_time').doUpdateSet({
          starts_at: iso(input.startsAt),
          ends_at: iso(input.endsAt),
          updated_at: now,
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
    return toSession(row);
  }

  async getSession(id: number): Promise<SessionRecord | undefined> {
    const row = await this.db
      .selectFrom('live_chat_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toSession(row);
  }

  async latestSessionStartedBy(at: number): Promise<SessionRecord | undefined> {
    const row = await this.db
      .selectFrom('live_chat_sessions')
      .selectAll()
      .where('starts_at', '<=', iso(at))
      .orderBy('draw_time', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row && toSession(row);
  }

  async setActiveSession(activeId: number | null): Promise<void> {
    const on = this.#bool(true);
    const off = this.#bool(false);
    await this.#transaction(async (trx) => {
      if (this.dialect === 'postgres') {
        // Row locks in ascending id order, the same order write() takes them: no deadlock between the two.
        await trx
          .selectFrom('live_chat_sessions')
          .select('id')
          .where((eb) =>
            activeId === null
              ? eb('is_active', '=', on)
              : eb.or([eb('is_active', '=', on), eb('id', '=', activeId)]),
          )
          .orderBy('id')
          .forUpdate()
          .execute();
      }
      let deactivate = trx
        .updateTable('live_chat_sessions')
        .set({ is_active: off })
        .where('is_active', '=', on);
      if (activeId !== null) deactivate = deactivate.where('id', '!=', activeId);
      await deactivate.execute();
      if (activeId !== null) {
        await trx
          .updateTable('live_chat_sessions')
          .set({ is_active: on })
          .where('id', '=', activeId)
          .where('is_active', '=', off)
          .execute();
      }
    });
  }

  // --- the group commit --------------------------------------------------------------------------------------

  async write(batch: WriteBatch): Promise<WriteBatchResult> {
    if (
      batch.messages.length === 0 &&
      batch.hearts.length === 0 &&
      batch.messageLikes.length === 0 &&
      batch.viewers.length === 0 &&
      batch.users.length === 0
    ) {
      return { messages: [], hearts: [], messageLikes: [], versions: [] };
    }
    return this.#transaction(async (trx) => {
      const heartSums = new Map<number, number>();
      for (const h of batch.hearts) heartSums.set(h.sessionId, (heartSums.get(h.sessionId) ?? 0) + h.count);

      // A message's session never changes, so reading it before taking the locks is safe.
      const likedIds = [...new Set(batch.messageLikes.map((l) => l.messageId))];
      const likedSessions = new Map<number, number>();
      for (const ids of chunks(likedIds)) {
        const rows = await trx
          .selectFrom('live_chat_messages')
          .select(['id', 'session_id'])
          .where('id', 'in', ids)
          .execute();
        for (const r of rows) likedSessions.set(Number(r.id), Number(r.session_id));
      }

      // Lock every touched session row in ascending id order (DESIGN §1): ids taken after the lock follow
      // commit order within a session, and writers on several nodes cannot deadlock. The hearts ride along.
      const sessionIds = new Set<number>([
        ...batch.messages.map((m) => m.sessionId),
        ...heartSums.keys(),
        ...batch.viewers.map((v) => v.sessionId),
        ...likedSessions.values(),
      ]);
      const now = iso(Date.now());
      const totals = new Map<number, number>();
      const versions: WriteBatchResult['versions'] = [];
      for (const id of [...sessionIds].sort((a, b) => a - b)) {
        const add = heartSums.get(id) ?? 0;
        const row = await trx
          .updateTable('live_chat_sessions')
          .set((eb) => ({
            updated_at: now,
            total_likes: eb('total_likes', '+', add),
            write_seq: eb('write_seq', '+', 1),
          }))
          .where('id', '=', id)
          .returning(['total_likes', 'write_seq'])
          .executeTakeFirst();
        if (!row) throw new Error(`write: unknown session ${id}`);
        totals.set(id, Number(row.total_likes));
        versions.push({ sessionId: id, version: Number(row.write_seq) });
      }

      // Under the lock, the newest id of each session is the predecessor of this batch's first message.
      const lastIds = new Map<number, number>();
      for (const sessionId of new Set(batch.messages.map((m) => m.sessionId))) {
        const row = await trx
          .selectFrom('live_chat_messages')
          .select((eb) => eb.fn.max('id').as('last'))
          .where('session_id', '=', sessionId)
          .executeTakeFirst();
        lastIds.set(sessionId, Number(row?.last ?? 0));
      }
      const inserted = await this.#insertMessages(trx, batch.messages);
      const fresh = inserted.filter((r) => !r.duplicate).sort((a, b) => a.message.id - b.message.id);
      const prevIds = new Map<StoredMessage, number>();
      for (const r of fresh) {
        prevIds.set(r.message, lastIds.get(r.message.sessionId) ?? 0);
        lastIds.set(r.message.sessionId, r.message.id);
      }
      const messages = inserted.map((r) => ({ ...r, prevId: r.duplicate ? 0 : prevIds.get(r.message)! }));
      const hearts = [...heartSums.keys()].map((sessionId) => ({
        sessionId,
        totalLikes: totals.get(sessionId)!,
      }));
      const messageLikes = await this.#applyMessageLikes(trx, batch.messageLikes, likedSessions);
      await this.#applyViewers(trx, batch.viewers);
      await this.#applyUsers(trx, batch.users);
      return { messages, hearts, messageLikes, versions };
    });
  }

  async #insertMessages(
    trx: Kysely<Database>,
    input: readonly NewMessage[],
  ): Promise<Array<{ message: StoredMessage; duplicate: boolean }>> {
    const results: Array<{ message: StoredMessage; duplicate: boolean } | undefined> = new Array(
      input.length,
    );

    // Retries of messages stored in earlier batches are found by the insert itself (ON CONFLICT DO NOTHING,
    // then one read per skipped row): they are rare, and a read of every key up front cost every batch a round
    // trip. Repeats within this batch are paired here.

    const toInsert: number[] = [];
    const firstInBatch = new Map<string, number>();
    const repeatOf = new Map<number, number>();
    input.forEach((m, i) => {
      if (m.clientMsgId === null) {
        toInsert.push(i);
        return;
      }
      const key = idempotencyKey(m.sessionId, m.userId, m.clientMsgId);
      const first = firstInBatch.get(key);
      if (first !== undefined) {
        repeatOf.set(i, first);
        return;
      }
      firstInBatch.set(key, i);
      toInsert.push(i);
    });

    for (const part of chunks(toInsert)) {
      const rows = await trx
        .insertInto('live_chat_messages')
        .values(
          part.map((i) => {
            const m = input[i]!;
            return {
              session_id: m.sessionId,
              user_id: m.userId,
              username: m.username,
              profile_pic: m.profilePic,
              is_host: this.#bool(m.isHost),
              message: m.message,
              client_msg_id: m.clientMsgId,
              created_at: iso(m.createdAt),
            };
          }),
        )
        // A key stored by an earlier batch (a retry) is skipped here and read below.
        .onConflict((oc) => oc.columns(['session_id', 'user_id', 'client_msg_id']).doNothing())
        .returningAll()
        .execute();
      // Neither dialect promises RETURNING order. A client_msg_id pairs a row with its input exactly; rows
      // without one pair by content, lowest id first (identical rows are interchangeable), else by position.
      const returned = rows.map(toMessage).sort((a, b) => a.id - b.id);
      const byKey = new Map<string, StoredMessage>();
      const anonymous: StoredMessage[] = [];
      for (const r of returned) {
        if (r.clientMsgId === null) anonymous.push(r);
        else byKey.set(idempotencyKey(r.sessionId, r.userId, r.clientMsgId), r);
      }
      for (const i of part) {
        const m = input[i]!;
        if (m.clientMsgId === null) {
          const at = Math.max(
            0,
            anonymous.findIndex((r) => sameContent(r, m)),
          );
          const row = anonymous.splice(at, 1)[0];
          if (!row) throw new Error('write: an inserted message did not come back');
          results[i] = { message: row, duplicate: false };
          continue;
        }
        const inserted = byKey.get(idempotencyKey(m.sessionId, m.userId, m.clientMsgId));
        if (inserted) {
          results[i] = { message: inserted, duplicate: false };
          continue;
        }
        // ON CONFLICT skipped it: a retry of a message stored by an earlier batch.
        const row = await trx
          .selectFrom('live_chat_messages')
          .selectAll()
          .where('session_id', '=', m.sessionId)
          .where('user_id', '=', m.userId)
          .where('client_msg_id', '=', m.clientMsgId)
          .executeTakeFirstOrThrow();
        results[i] = { message: toMessage(row), duplicate: true };
      }
    }

    for (const [i, first] of repeatOf) results[i] = { message: results[first]!.message, duplicate: true };
    return results.map((r) => r!);
  }

  async #applyMessageLikes(
    trx: Kysely<Database>,
    ops: WriteBatch['messageLikes'],
    sessionOf: ReadonlyMap<number, number>,
  ): Promise<WriteBatchResult['messageLikes']> {
    if (ops.length === 0) return [];
    // Read the counts under the session locks: every writer of `likes` holds them, so the counts kept here
    // stay exact for the whole transaction.
    const likes = new Map<number, number>();
    for (const ids of chunks([...sessionOf.keys()])) {
      const rows = await trx
        .selectFrom('live_chat_messages')
        .select(['id', 'likes'])
        .where('id', 'in', ids)
        .where('deleted_at', 'is', null)
        .execute();
      for (const r of rows) likes.set(Number(r.id), Number(r.likes));
    }
    const start = new Map(likes);

    const results: WriteBatchResult['messageLikes'] = [];
    for (const op of ops) {
      const sessionId = sessionOf.get(op.messageId);
      const before = likes.get(op.messageId);
      if (sessionId === undefined || before === undefined) {
        results.push(null);
        continue;
      }
      let changed: boolean;
      if (op.liked) {
        const inserted = await trx
          .insertInto('live_chat_likes')
          .values({
            message_id: op.messageId,
            user_id: op.userId,
            session_id: sessionId,
            created_at: iso(op.at),
          })
          .onConflict((oc) => oc.columns(['message_id', 'user_id']).doNothing())
          .returning('message_id')
          .executeTakeFirst();
        changed = inserted !== undefined;
      } else {
        const deleted = await trx
          .deleteFrom('live_chat_likes')
          .where('message_id', '=', op.messageId)
          .where('user_id', '=', op.userId)
          .returning('message_id')
          .executeTakeFirst();
        changed = deleted !== undefined;
      }
      const after = changed ? before + (op.liked ? 1 : -1) : before;
      likes.set(op.messageId, after);
      results.push({ messageId: op.messageId, sessionId, likes: after, changed });
    }

    // One relative update per message, so the count moves by exactly the rows inserted and deleted above.
    for (const [id, count] of likes) {
      const delta = count - start.get(id)!;
      if (delta === 0) continue;
      await trx
        .updateTable('live_chat_messages')
        .set((eb) => ({ likes: eb('likes', '+', delta) }))
        .where('id', '=', id)
        .execute();
    }
    return results;
  }

  async #applyViewers(trx: Kysely<Database>, changes: WriteBatch['viewers']): Promise<void> {
    if (changes.length === 0) return;
    // Applying the changes of one (session, user) in order ends where the last one says, with first_seen_at
    // from the first; one row per key also keeps PostgreSQL's ON CONFLICT from touching a row twice.
    const latest = new Map<
      string,
      { sessionId: number; userId: string; active: boolean; at: number; first: number }
    >();
    for (const v of changes) {
      const key = JSON.stringify([v.sessionId, v.userId]);
      const prev = latest.get(key);
      latest.set(key, { ...v, first: prev ? prev.first : v.at });
    }
    for (const part of chunks([...latest.values()])) {
      await trx
        .insertInto('live_chat_viewers')
        .values(
          part.map((v) => ({
            session_id: v.sessionId,
            user_id: v.userId,
            is_active: this.#bool(v.active),
            first_seen_at: iso(v.first),
            last_seen_at: iso(v.at),
            disconnected_at: v.active ? null : iso(v.at),
          })),
        )
        .onConflict((oc) =>
          oc.columns(['session_id', 'user_id']).doUpdateSet((eb) => ({
            is_active: eb.ref('excluded.is_active'),
            last_seen_at: eb.ref('excluded.last_seen_at'),
            disconnected_at: eb.ref('excluded.disconnected_at'),
          })),
        )
        .execute();
    }
  }

  // --- history -----------------------------------------------------------------------------------------------

  async listMessages(sessionId: number, query: HistoryPageQuery): Promise<HistoryPage> {
    const limit = Math.max(0, Math.floor(query.limit));
    const { likedBy } = query;
    let q = this.db
      .selectFrom('live_chat_messages')
      .selectAll()
      .$if(likedBy !== undefined, (qb) =>
        qb.select((eb) =>
          eb
            .exists(
              eb
                .selectFrom('live_chat_likes')
                .select('live_chat_likes.message_id')
                .whereRef('live_chat_likes.message_id', '=', 'live_chat_messages.id')
                .where('live_chat_likes.user_id', '=', likedBy!),
            )
            .as('liked_by_me'),
        ),
      )
      .where('session_id', '=', sessionId)
      .where('deleted_at', 'is', null);
    if (query.beforeId !== undefined) q = q.where('id', '<', query.beforeId);
    if (query.afterId !== undefined) q = q.where('id', '>', query.afterId);

    // afterId alone pages forward (oldest first); everything else pages backward from the newest.
    const forward = query.afterId !== undefined && query.beforeId === undefined;
    const rows = await q
      .orderBy('id', forward ? 'asc' : 'desc')
      .limit(limit + 1)
      .execute();
    const hasMore = rows.length > limit;
    const kept = rows.slice(0, limit);
    const page = kept.map(toMessage);
    if (!forward) page.reverse();
    const liked = new Set<number>();
    for (const row of kept)
      if (row.liked_by_me !== undefined && toBool(row.liked_by_me)) liked.add(Number(row.id));
    return { messages: page, hasMore, liked };
  }

  async messagesAfter(sessionId: number, afterId: number, limit: number): Promise<StoredMessage[]> {
    const rows = await this.db
      .selectFrom('live_chat_messages')
      .selectAll()
      .where('session_id', '=', sessionId)
      .where('id', '>', afterId)
      .where('deleted_at', 'is', null)
      .orderBy('id', 'asc')
      .limit(Math.max(0, Math.floor(limit)))
      .execute();
    return rows.map(toMessage);
  }

  async messageByClientId(
    sessionId: number,
    userId: string,
    clientMsgId: string,
  ): Promise<StoredMessage | undefined> {
    const row = await this.db
      .selectFrom('live_chat_messages')
      .selectAll()
      .where('session_id', '=', sessionId)
      .where('user_id', '=', userId)
      .where('client_msg_id', '=', clientMsgId)
      .executeTakeFirst();
    return row && toMessage(row);
  }

  async getMessage(id: number): Promise<StoredMessage | undefined> {
    const row = await this.db
      .selectFrom('live_chat_messages')
      .selectAll()
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return row && toMessage(row);
  }

  async deleteMessage(id: number, at: number): Promise<StoredMessage | undefined> {
    const row = await this.db
      .updateTable('live_chat_messages')
      .set({ deleted_at: iso(at) })
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
    return row && toMessage(row);
  }

  async deletedMessageIds(sessionId: number, fromId: number, limit: number): Promise<number[]> {
    const rows = await this.db
      .selectFrom('live_chat_messages')
      .select('id')
      .where('session_id', '=', sessionId)
      .where('id', '>=', fromId)
      .where('deleted_at', 'is not', null)
      .orderBy('id', 'desc')
      .limit(Math.max(0, Math.floor(limit)))
      .execute();
    return rows.map((r) => Number(r.id)).reverse();
  }

  async likedMessageIds(userId: string, messageIds: readonly number[]): Promise<Set<number>> {
    const liked = new Set<number>();
    for (const ids of chunks([...new Set(messageIds)])) {
      const rows = await this.db
        .selectFrom('live_chat_likes')
        .select('message_id')
        .where('user_id', '=', userId)
        .where('message_id', 'in', ids)
        .execute();
      for (const r of rows) liked.add(Number(r.message_id));
    }
    return liked;
  }

  // --- winners and viewers -----------------------------------------------------------------------------------

  async setWinners(sessionId: number, userIds: readonly string[], at: number): Promise<number> {
    const wanted = new Set(userIds);
    return this.#transaction(async (trx) => {
      // Two callers at once: the second waits for the first (the session row's lock; SQLite's write transaction
      // serialises them the same way) and replaces its set, instead of both reading the old set and adding theirs
      // to it. The session's write_seq, taken under that lock, orders the two lists on every node.
      const row = await trx
        .updateTable('live_chat_sessions')
        .set((eb) => ({ write_seq: eb('write_seq', '+', 1) }))
        .where('id', '=', sessionId)
        .returning('write_seq')
        .executeTakeFirst();
      const version = Number(row?.write_seq ?? 0);
      const current = await trx
        .selectFrom('live_chat_winners')
        .select('user_id')
        .where('session_id', '=', sessionId)
        .execute();
      const have = new Set(current.map((r) => r.user_id));
      // Winners kept keep their original created_at.
      for (const part of chunks([...have].filter((u) => !wanted.has(u)))) {
        await trx
          .deleteFrom('live_chat_winners')
          .where('session_id', '=', sessionId)
          .where('user_id', 'in', part)
          .execute();
      }
      for (const part of chunks([...wanted].filter((u) => !have.has(u)))) {
        await trx
          .insertInto('live_chat_winners')
          .values(part.map((user_id) => ({ session_id: sessionId, user_id, created_at: iso(at) })))
          .onConflict((oc) => oc.columns(['session_id', 'user_id']).doNothing())
          .execute();
      }
      return version;
    });
  }

  async getWinners(sessionId: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('live_chat_winners')
      .select('user_id')
      .where('session_id', '=', sessionId)
      .orderBy('created_at')
      .orderBy('user_id')
      .execute();
    return rows.map((r) => r.user_id);
  }

  async activeViewerIds(sessionId: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('live_chat_viewers')
      .select('user_id')
      .where('session_id', '=', sessionId)
      .where('is_active', '=', this.#bool(true))
      .execute();
    return rows.map((r) => r.user_id);
  }

  async endViewersOfEndedSessions(endedBy: number, at: number, endedAfter?: number): Promise<number> {
    const result = await this.db
      .updateTable('live_chat_viewers')
      .set({ is_active: this.#bool(false), disconnected_at: iso(at) })
      .where('is_active', '=', this.#bool(true))
      .where('session_id', 'in', (eb) => {
        const ended = eb.selectFrom('live_chat_sessions').select('id').where('ends_at', '<=', iso(endedBy));
        return endedAfter === undefined ? ended : ended.where('ends_at', '>', iso(endedAfter));
      })
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async resetViewers(): Promise<void> {
    const now = iso(Date.now());
    await this.db
      .updateTable('live_chat_viewers')
      .set({ is_active: this.#bool(false), disconnected_at: now })
      .where('is_active', '=', this.#bool(true))
      .execute();
  }
}

/** Opens the database named by `url` (see `openDatabase`); call `migrate()` before first use. */
export function createChatStore(url: string): ChatStore {
  const { db, dialect } = openDatabase(url);
  return new KyselyChatStore(db, dialect);
}

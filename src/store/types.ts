/**
 * The storage contract of draw-chat. One implementation (Kysely) runs on SQLite and PostgreSQL; the behaviour
 * suite in test/integration/store.test.ts holds both to it. Times are milliseconds since the Unix epoch.
 */

export interface UserRecord {
  id: string;
  /** Resolved display name: token name/nickname, else the profile set by the draw backend, else the fallback. */
  username: string;
  /** Resolved avatar URL: token picture, else the backend profile picture, else null. */
  profilePic: string | null;
}

/** A user as the claims would leave it, and whether the claims still have to be written. */
export interface UserPreview {
  user: UserRecord;
  write: boolean;
}

export interface UserClaimsInput {
  id: string;
  /** `name` or `nickname` from the token; null when the token has neither. */
  claimName: string | null;
  /** `picture` from the token, or null. */
  claimPicture: string | null;
  /** Used when neither the token nor the backend gave a name: email before `@`, else `sub`. */
  fallbackName: string;
  at: number;
}

export interface SessionRecord {
  id: number;
  drawTime: number;
  startsAt: number;
  endsAt: number;
  isActive: boolean;
  totalLikes: number;
}

export interface StoredMessage {
  id: number;
  sessionId: number;
  userId: string;
  /** Snapshot of the sender's name, avatar and HOST role when the message was sent. */
  username: string;
  profilePic: string | null;
  isHost: boolean;
  message: string;
  createdAt: number;
  /**
   * `createdAt` as the wire has it (ISO 8601, UTC, milliseconds), when the store read it: SQLite keeps that very
   * text, so a history page need not parse and format it again (the wire formats it itself when this is absent).
   */
  createdAtText?: string;
  likes: number;
  clientMsgId: string | null;
  /** Set on a deleted message, which only a retry's lookup by `client_msg_id` reads (every other read skips them). */
  deleted?: true;
}

export interface NewMessage {
  sessionId: number;
  userId: string;
  username: string;
  profilePic: string | null;
  isHost: boolean;
  message: string;
  clientMsgId: string | null;
  createdAt: number;
}

/** Everything one group-commit tick writes, in one transaction. */
export interface WriteBatch {
  messages: NewMessage[];
  /** Session hearts to add; several entries for one session are summed. */
  hearts: Array<{ sessionId: number; count: number }>;
  /** Message like (`liked: true`) or unlike (`liked: false`) by one user, applied in order. */
  messageLikes: Array<{ messageId: number; userId: string; liked: boolean; at: number }>;
  /** Viewer presence changes for `live_chat_viewers`, applied in order. */
  viewers: Array<{ sessionId: number; userId: string; active: boolean; at: number }>;
  /**
   * Users first seen, or whose token claims changed (see `previewUsersFromClaims`): upserted like
   * `upsertUserFromClaims`, the last entry per id wins.
   */
  users: UserClaimsInput[];
}

export interface WriteBatchResult {
  /**
   * In the order of `batch.messages`. `duplicate` when (session, user, client_msg_id) was already stored.
   * `prevId`: for a new message, the id of the message stored just before it in its session (0 for the first);
   * other nodes use it to deliver in order and to see gaps (ids themselves are not contiguous).
   */
  messages: Array<{ message: StoredMessage; duplicate: boolean; prevId: number }>;
  /**
   * Every session the batch locked, with its write version after the commit: it increases by one per batch, so
   * counts published from different nodes can be applied newest-wins.
   */
  versions: Array<{ sessionId: number; version: number }>;
  /** One entry per distinct session of `batch.hearts`, with the total after the commit. */
  hearts: Array<{ sessionId: number; totalLikes: number }>;
  /**
   * In the order of `batch.messageLikes`: the message's like count after the operation and whether it changed
   * anything (a repeated like or an unlike without a like changes nothing); null for an unknown or deleted message.
   */
  messageLikes: Array<{ messageId: number; sessionId: number; likes: number; changed: boolean } | null>;
}

export interface HistoryPageQuery {
  limit: number;
  /** Only messages with id < beforeId. */
  beforeId?: number;
  /** Only messages with id > afterId. */
  afterId?: number;
  /**
   * Also find which of the page's messages this user liked (`HistoryPage.liked`), in the same statement: one
   * round trip to the database per page, not two.
   */
  likedBy?: string;
}

export interface HistoryPage {
  /** Oldest first. */
  messages: StoredMessage[];
  /**
   * Without afterId (or with both bounds): whether older messages exist before the page.
   * With afterId alone: whether newer messages exist after the page.
   */
  hasMore: boolean;
  /** With `likedBy`: the ids of the page's messages that user liked; otherwise empty. */
  liked: Set<number>;
}

export interface ChatStore {
  readonly dialect: 'sqlite' | 'postgres';
  /** Runs pending migrations (idempotent). */
  migrate(): Promise<void>;
  /** The id of this database's history: made once, when the database is new; a recreated database gets another. */
  epoch(): Promise<string>;
  /** The newest message id of a session, deleted messages included (0 when none). */
  lastMessageId(sessionId: number): Promise<number>;
  /** A cheap round trip, for readiness. */
  ping(): Promise<void>;
  close(): Promise<void>;

  upsertUserFromClaims(input: UserClaimsInput): Promise<UserRecord>;
  /**
   * Each user as `upsertUserFromClaims` would leave it, read without writing, in the order given; `write` says
   * whether the stored row differs from the claims (or is missing), i.e. whether the upsert still has to be done
   * (in a `WriteBatch`). One read for many users: a crowd's handshakes share it.
   */
  previewUsersFromClaims(inputs: readonly UserClaimsInput[]): Promise<UserPreview[]>;
  /** Sets the backend profile (fields left undefined stay as they are; null clears the picture). */
  setUserProfile(
    id: string,
    profile: { username?: string; profilePic?: string | null },
    at: number,
  ): Promise<UserRecord>;
  getUser(id: string): Promise<UserRecord | undefined>;

  /** Creates the session of a draw, or updates its window if it exists; never changes is_active or likes. */
  ensureSession(input: { drawTime: number; startsAt: number; endsAt: number }): Promise<SessionRecord>;
  getSession(id: number): Promise<SessionRecord | undefined>;
  /** The session with the latest draw among those whose window has started at `at`. */
  latestSessionStartedBy(at: number): Promise<SessionRecord | undefined>;
  /** Marks `activeId` active and every other session inactive (null: none active). */
  setActiveSession(activeId: number | null): Promise<void>;

  /** One transaction: locks each session row touched (ascending id), then writes. */
  write(batch: WriteBatch): Promise<WriteBatchResult>;

  listMessages(sessionId: number, query: HistoryPageQuery): Promise<HistoryPage>;
  /** Every message with id > afterId, oldest first, at most `limit`. */
  messagesAfter(sessionId: number, afterId: number, limit: number): Promise<StoredMessage[]>;
  getMessage(id: number): Promise<StoredMessage | undefined>;
  /**
   * The message a user stored in a session with this `client_msg_id` (deleted or not, as `write` finds a
   * retry's original), or undefined.
   */
  messageByClientId(
    sessionId: number,
    userId: string,
    clientMsgId: string,
  ): Promise<StoredMessage | undefined>;
  /** Soft-deletes; returns the message as it was, or undefined when unknown or already deleted. */
  deleteMessage(id: number, at: number): Promise<StoredMessage | undefined>;
  /** Ids of a session's deleted messages from `fromId` on: the `limit` highest, ascending. */
  deletedMessageIds(sessionId: number, fromId: number, limit: number): Promise<number[]>;

  /** Of `messageIds`, the ones `userId` likes. */
  likedMessageIds(userId: string, messageIds: readonly number[]): Promise<Set<number>>;

  /** Replaces the winners of a session; returns the session's write_seq taken with it (a later list's is greater). */
  setWinners(sessionId: number, userIds: readonly string[], at: number): Promise<number>;
  getWinners(sessionId: number): Promise<string[]>;

  /** Marks every viewer row inactive (a single node at start-up: nobody is connected yet). */
  resetViewers(): Promise<void>;
  /**
   * Marks inactive every viewer row still active in a session whose window ended by `endedBy` (and after
   * `endedAfter`, when given: the sessions' primary key then finds the rows without a scan of the table); rows a
   * node that died left behind, as nobody can be watching a closed session. Returns how many it changed.
   */
  endViewersOfEndedSessions(endedBy: number, at: number, endedAfter?: number): Promise<number>;
  /** Users whose viewer row for the session is active. */
  activeViewerIds(sessionId: number): Promise<string[]>;
}

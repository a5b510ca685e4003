import type { ChatMessage, ServerEvent, SessionInfo } from '../protocol/messages.js';
import type { SessionRecord, StoredMessage } from '../store/types.js';

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * `created_at` of a stored message: the store's text, else formatted once (a message from another node; every
 * `init` sends the recent ones again).
 */
const createdAtText = new WeakMap<StoredMessage, string>();
function createdAt(m: StoredMessage): string {
  if (m.createdAtText !== undefined) return m.createdAtText;
  let text = createdAtText.get(m);
  if (text === undefined) {
    text = iso(m.createdAt);
    createdAtText.set(m, text);
  }
  return text;
}

/** A stored message as it goes on the wire. `is_winner` is live: it follows the session's winners. */
export function toWireMessage(
  m: StoredMessage,
  winners: ReadonlySet<string>,
  likedByMe?: boolean,
): ChatMessage {
  const out: ChatMessage = {
    id: m.id,
    session_id: m.sessionId,
    user_id: m.userId,
    username: m.username,
    profile_pic: m.profilePic,
    is_winner: winners.has(m.userId),
    is_host: m.isHost,
    message: m.message,
    created_at: createdAt(m),
    likes: m.likes,
  };
  if (m.clientMsgId !== null) out.client_msg_id = m.clientMsgId;
  if (likedByMe !== undefined) out.liked_by_me = likedByMe;
  return out;
}

/** A message's JSON for viewers who have not liked it, kept while its like count and winner badge stay the same. */
const unlikedJson = new WeakMap<StoredMessage, { likes: number; isWinner: boolean; json: string }>();

function wireMessageJson(m: StoredMessage, winners: ReadonlySet<string>, likedByMe: boolean): string {
  if (likedByMe) return JSON.stringify(toWireMessage(m, winners, true));
  const isWinner = winners.has(m.userId);
  const kept = unlikedJson.get(m);
  if (kept !== undefined && kept.likes === m.likes && kept.isWinner === isWinner) return kept.json;
  const json = JSON.stringify(toWireMessage(m, winners, false));
  unlikedJson.set(m, { likes: m.likes, isWinner, json });
  return json;
}

/**
 * The `messages` of an `init` as JSON text, each with `liked_by_me`: what `JSON.stringify` makes of their wire
 * forms. Every socket that joins gets the same recent messages (and in a reconnect storm, the same few after
 * `since`): each message is serialised once, not once per socket.
 */
export function wireMessagesJson(
  messages: readonly StoredMessage[],
  winners: ReadonlySet<string>,
  likedByMe: ReadonlySet<number>,
): string {
  return `[${messages.map((m) => wireMessageJson(m, winners, likedByMe.has(m.id))).join(',')}]`;
}

/** The `init` event as JSON text, its `messages` given as JSON text (`wireMessagesJson`); fields in schema order. */
export function initEventJson(
  event: Omit<Extract<ServerEvent, { type: 'init' }>, 'messages'>,
  messagesJson: string,
): string {
  const head = JSON.stringify({
    type: event.type,
    session: event.session,
    you: event.you,
    viewer_count: event.viewer_count,
    total_likes: event.total_likes,
  });
  return `${head.slice(0, -1)},"messages":${messagesJson},"epoch":${JSON.stringify(event.epoch)}}`;
}

export function toWireSession(
  s: SessionRecord,
  live: { isActive: boolean; totalLikes: number; viewerCount: number },
): SessionInfo {
  return {
    id: s.id,
    draw_time: iso(s.drawTime),
    starts_at: iso(s.startsAt),
    ends_at: iso(s.endsAt),
    is_active: live.isActive,
    total_likes: live.totalLikes,
    viewer_count: live.viewerCount,
  };
}

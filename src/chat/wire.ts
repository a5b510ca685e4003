import type { ChatMessage, SessionInfo } from '../protocol/messages.js';
import type { SessionRecord, StoredMessage } from '../store/types.js';

const iso = (ms: number) => new Date(ms).toISOString();

/** `created_at` of a stored message, formatted once: every `init` sends the recent ones again. */
const createdAtText = new WeakMap<StoredMessage, string>();
function createdAt(m: StoredMessage): string {
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

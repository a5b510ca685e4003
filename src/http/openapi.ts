import { CloseCode } from '../protocol/close-codes.js';
import { ErrorCodes } from '../protocol/errors.js';
import { MAX_RESUME_MESSAGES } from '../protocol/messages.js';

const closeCodeDocs: Record<keyof typeof CloseCode, string> = {
  GOING_AWAY: 'server shutting down; reconnect with `since`',
  INVALID_PAYLOAD: 'a text frame that is not valid UTF-8',
  POLICY:
    'the handshake Origin is not allowed (`CORS_ORIGINS`, reason `origin not allowed`); or an abusive client: ' +
    '`ping flood`, `too many refused frames`, `too many frames before init`, or a message in more than 64 fragments',
  TOO_LARGE: 'a frame larger than `LIVE_CHAT_MAX_FRAME_BYTES`',
  INTERNAL_ERROR:
    'the handshake failed on the server (`internal error`, e.g. the database away) or the signing keys cannot be ' +
    'fetched (`signing keys unavailable`); retry later with the same token',
  UNAUTHORIZED:
    'missing, invalid or expired token (also when it expires on an open socket without an `auth` refresh)',
  FORBIDDEN: 'forbidden',
  NOT_FOUND: 'no such session',
  SLOW_CONSUMER: 'the socket did not keep up with the room; reconnect with `since`',
  CHAT_CLOSED: 'the chat window is not active, it just closed, or the chat is disabled',
  TOO_MANY_CONNECTIONS: 'more than `LIVE_CHAT_MAX_CONNECTIONS_PER_USER` sockets for one user',
};

/** The WebSocket protocol, described for the OpenAPI page (OpenAPI itself has no words for it). */
export const WEBSOCKET_DOC = `
## WebSocket: \`GET /live-chat/ws/{session_id}?token=<jwt>[&since=<message_id>&epoch=<epoch>][&batch=1]\`

One JSON object per text frame. With \`batch=1\` every frame is a JSON array of such objects.
Get the active \`session_id\` from \`GET /live-chat/status\`.

**Server → client**

| type | fields |
|---|---|
| \`init\` | \`session\`, \`you\` {user_id, username, profile_pic, is_host, is_winner}, \`viewer_count\`, \`total_likes\`, \`messages\` (recent history, or every message after \`since\`; each with \`liked_by_me\`), \`epoch\` |
| \`resync_required\` | \`reason\` (\`epoch_changed\`, \`too_far_behind\`: more than ${MAX_RESUME_MESSAGES} missed, \`unknown_position\`), \`epoch\`: comes right before an \`init\` with recent history; replace what you show with it |
| \`new_message\` | \`message\`: sent to everyone (sender included) only after the message is committed |
| \`session_like_update\` | \`session_id\`, \`total_likes\` (coalesced: at most 4 a second) |
| \`message_like_update\` | \`message_id\`, \`likes\` (coalesced) |
| \`viewer_count_update\` | \`session_id\`, \`viewer_count\` (coalesced) |
| \`message_deleted\` | \`session_id\`, \`message_id\` |
| \`winner_update\` | \`session_id\`, \`user_ids\`: the winners now; re-badge their messages |
| \`chat_closed\` | \`session_id\`, \`reason\` (\`window_ended\` or \`disabled\`); the socket then closes with 4409 |
| \`pong\` | \`server_time\` |
| \`error\` | \`code\`, \`message\`, \`client_msg_id\`?, \`retry_after_ms\`? |

**Client → server**

| type | fields |
|---|---|
| \`message\` | \`message\`, \`client_msg_id\`? (1-64 printable ASCII; a retry with the same id returns the original) |
| \`like\` | (one session heart) |
| \`like_message\` / \`unlike_message\` | \`message_id\` |
| \`auth\` | \`token\`: a refreshed JWT for the same user, before the current one expires |
| \`ping\` | (answered with \`pong\`) |

Malformed JSON, unknown types and frames that fail their schema get an \`error\` event with code \`bad_request\`; the
connection stays open.

**Close codes**

| code | meaning |
|---|---|
${Object.entries(CloseCode)
  .map(([name, code]) => `| ${code} | ${closeCodeDocs[name as keyof typeof CloseCode]} |`)
  .join('\n')}

**Error codes** (HTTP \`error.code\` and WebSocket \`error.code\`)

| code | HTTP status | meaning |
|---|---|---|
${Object.entries(ErrorCodes)
  .map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.message} |`)
  .join('\n')}
`;

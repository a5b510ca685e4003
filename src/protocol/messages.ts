import { z } from 'zod';
import { compiled } from './compile.js';

/** Bumped when a change to this file is not backwards compatible for clients. */
export const PROTOCOL_VERSION = 1;

/**
 * Resume (`since`) replays at most this many missed messages; a client further behind gets `resync_required`
 * and a fresh `init` with recent history instead.
 */
export const MAX_RESUME_MESSAGES = 1000;

const id = z.number().int().positive();
const isoTime = z.string().describe('ISO-8601 instant in UTC');

/** `client_msg_id`: the sender's own id for a message, used to make retries idempotent. */
export const ClientMsgId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
  .describe('Sender-chosen idempotency key (1-64 printable ASCII characters, e.g. a UUID)');

export const ChatMessageSchema = z
  .object({
    id,
    session_id: id,
    user_id: z.string(),
    username: z.string(),
    profile_pic: z.string().nullable(),
    is_winner: z.boolean(),
    is_host: z.boolean(),
    message: z.string(),
    created_at: isoTime,
    likes: z.number().int().nonnegative(),
    client_msg_id: ClientMsgId.optional(),
    liked_by_me: z.boolean().optional().describe('Only in `init` and history responses'),
  })
  .describe('A chat message');
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

export const SessionInfoSchema = z
  .object({
    id,
    draw_time: isoTime,
    starts_at: isoTime,
    ends_at: isoTime,
    is_active: z.boolean(),
    total_likes: z.number().int().nonnegative(),
    viewer_count: z.number().int().nonnegative(),
  })
  .describe('A chat session: one per draw');
export type SessionInfo = z.infer<typeof SessionInfoSchema>;

export const YouSchema = z.object({
  user_id: z.string(),
  username: z.string(),
  profile_pic: z.string().nullable(),
  is_host: z.boolean(),
  is_winner: z.boolean(),
});
export type You = z.infer<typeof YouSchema>;

// ---------------------------------------------------------------- server -> client

export const InitEvent = z.object({
  type: z.literal('init'),
  session: SessionInfoSchema,
  you: YouSchema,
  viewer_count: z.number().int().nonnegative(),
  total_likes: z.number().int().nonnegative(),
  messages: z.array(ChatMessageSchema),
  epoch: z
    .string()
    .describe('The history this server holds; send it back as `&epoch=` with `&since=` when resuming'),
});
export const NewMessageEvent = z.object({ type: z.literal('new_message'), message: ChatMessageSchema });
export const SessionLikeUpdateEvent = z.object({
  type: z.literal('session_like_update'),
  session_id: id,
  total_likes: z.number().int().nonnegative(),
});
export const MessageLikeUpdateEvent = z.object({
  type: z.literal('message_like_update'),
  message_id: id,
  likes: z.number().int().nonnegative(),
});
export const ViewerCountUpdateEvent = z.object({
  type: z.literal('viewer_count_update'),
  session_id: id,
  viewer_count: z.number().int().nonnegative(),
});
export const MessageDeletedEvent = z.object({
  type: z.literal('message_deleted'),
  session_id: id,
  message_id: id,
});
export const WinnerUpdateEvent = z.object({
  type: z.literal('winner_update'),
  session_id: id,
  user_ids: z.array(z.string()),
});
export const ChatClosedEvent = z.object({
  type: z.literal('chat_closed'),
  session_id: id,
  reason: z.enum(['window_ended', 'disabled']),
});
export const ResyncRequiredEvent = z.object({
  type: z.literal('resync_required'),
  reason: z
    .enum(['epoch_changed', 'too_far_behind', 'unknown_position'])
    .describe(
      '`epoch_changed`: the server holds another history (database recreated); `too_far_behind`: more than ' +
        'MAX_RESUME_MESSAGES were missed; `unknown_position`: `since` names no message of this history',
    ),
  epoch: z.string(),
});
export const PongEvent = z.object({ type: z.literal('pong'), server_time: isoTime });
export const ErrorEvent = z.object({
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
  client_msg_id: ClientMsgId.optional(),
  retry_after_ms: z.number().int().nonnegative().optional(),
});

export const ServerEventSchema = z.discriminatedUnion('type', [
  InitEvent,
  NewMessageEvent,
  SessionLikeUpdateEvent,
  MessageLikeUpdateEvent,
  ViewerCountUpdateEvent,
  MessageDeletedEvent,
  WinnerUpdateEvent,
  ChatClosedEvent,
  ResyncRequiredEvent,
  PongEvent,
  ErrorEvent,
]);
export type ServerEvent = z.infer<typeof ServerEventSchema>;
export type ServerEventOf<T extends ServerEvent['type']> = Extract<ServerEvent, { type: T }>;

// ---------------------------------------------------------------- client -> server

export const SendMessageCommand = z.object({
  type: z.literal('message'),
  message: z.string(),
  client_msg_id: ClientMsgId.optional(),
});
export const LikeCommand = z.object({ type: z.literal('like') });
export const LikeMessageCommand = z.object({ type: z.literal('like_message'), message_id: id });
export const UnlikeMessageCommand = z.object({ type: z.literal('unlike_message'), message_id: id });
export const AuthCommand = z.object({ type: z.literal('auth'), token: z.string().min(1).max(8192) });
export const PingCommand = z.object({ type: z.literal('ping') });

export const ClientCommandSchema = z.discriminatedUnion('type', [
  SendMessageCommand,
  LikeCommand,
  LikeMessageCommand,
  UnlikeMessageCommand,
  AuthCommand,
  PingCommand,
]);
export type ClientCommand = z.infer<typeof ClientCommandSchema>;
export type ClientCommandOf<T extends ClientCommand['type']> = Extract<ClientCommand, { type: T }>;
export const CLIENT_COMMAND_TYPES = ClientCommandSchema.options.map((o) => o.shape.type.value);

// ---------------------------------------------------------------- compiled, for the hot paths

// The same schemas compiled (`compiled`, src/protocol/compile.ts), where every event or command goes through a
// check: the client library for each event it receives, the server for each command, the load generator's
// full clients for each message. Docs and OpenAPI read the plain schemas above.

/** `ServerEventSchema`, compiled: what a client checks each received event against. */
export const ServerEventParser = compiled(ServerEventSchema);
/** `ClientCommandSchema`, compiled: what the server checks each received command against. */
export const ClientCommandParser = compiled(ClientCommandSchema);
/** `ChatMessageSchema`, compiled. */
export const ChatMessageParser = compiled(ChatMessageSchema);

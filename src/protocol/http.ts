import { z } from 'zod';
import { ERROR_CODE_LIST } from './errors.js';
import { ChatMessageSchema, ClientMsgId, SessionInfoSchema } from './messages.js';

/** Request and response bodies of the HTTP API (SPEC §4). The route schemas and OpenAPI are built from these. */

export const Phase = z.enum(['pre_draw', 'post_draw', 'closed']);
export type Phase = z.infer<typeof Phase>;

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODE_LIST as [string, ...string[]]),
      message: z.string(),
      retry_after_ms: z.number().int().optional(),
    }),
  })
  .describe('Every error response has this shape');

export const StatusResponse = z.object({
  enabled: z.boolean(),
  is_active: z.boolean(),
  phase: Phase,
  server_time: z.string(),
  next_draw_time: z.string().nullable().describe('The earliest draw at or after server_time'),
  opens_at: z.string().nullable().describe('Start of the current window, or of the next one when closed'),
  closes_at: z.string().nullable().describe('End of the current window, or of the next one when closed'),
  session: SessionInfoSchema.nullable(),
  settings: z.object({
    max_messages_per_minute: z.number().int(),
    history_limit: z.number().int(),
    max_message_length: z.number().int(),
  }),
});
export type StatusResponse = z.infer<typeof StatusResponse>;

/** An integer from `min` (0 or 1) in decimal digits only: JavaScript's number syntax (`0x10`, `1e3`, ` 5`, `5.0`) is not an id. */
const intString = (min: 0 | 1) =>
  z
    .string()
    .regex(min === 0 ? /^(?:0|[1-9][0-9]*)$/ : /^[1-9][0-9]*$/, `must be an integer from ${min}`)
    .transform(Number)
    .pipe(z.number().int().min(min));
const positiveIntString = intString(1);

/** With the `u` flag a surrogate class matches only unpaired halves (a pair is one code point). */
export const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

// Issue 6: names and ids that end up in the database and in every viewer's widget. Control characters (NUL above
// all: PostgreSQL refuses it with an error, SQLite would store it) are refused the same way on both stores.
// A lone UTF-16 surrogate is not text either: SQLite would store invalid UTF-8 and PostgreSQL U+FFFD.
const noControl = (s: z.ZodString) =>
  s
    .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters')
    .refine((v) => !LONE_SURROGATE.test(v), { message: 'must be valid Unicode text (a lone surrogate)' });

/** Text with nothing a reader can see: spaces, format characters (zero-width, bidi controls) and stray marks. */
export const INVISIBLE_ONLY = /^[\p{White_Space}\p{Cf}\p{M}]*$/u;
/** A display name: no control characters, and something visible (a name of zero-width characters shows nobody). */
const displayName = () =>
  noControl(z.string().trim().min(1).max(100)).refine((v) => !INVISIBLE_ONLY.test(v), {
    message: 'must contain a visible character',
  });

export const HistoryQuery = z.object({
  session_id: positiveIntString.optional(),
  limit: positiveIntString.optional().describe('Page size; values above the history limit are clamped to it'),
  before_id: positiveIntString.optional(),
  // `after_id=0` is the oldest page; `after_id=` (empty) is refused, as it is for the other ids.
  after_id: intString(0).optional(),
});
export const HistoryResponse = z.object({
  session_id: z.number().int().positive().nullable(),
  messages: z.array(ChatMessageSchema),
  has_more: z.boolean(),
});
export type HistoryResponse = z.infer<typeof HistoryResponse>;

export const SendMessageBody = z.object({
  message: z.string(),
  client_msg_id: ClientMsgId.optional(),
  session_id: z.number().int().positive().optional().describe('Must be the active session when given'),
});

export const SessionLikeBody = z.object({ session_id: z.number().int().positive().optional() }).nullish();
export const SessionLikeResponse = z.object({
  session_id: z.number().int().positive(),
  total_likes: z.number().int(),
});

export const MessageIdParams = z.object({ message_id: positiveIntString });
export const MessageLikeResponse = z.object({
  message_id: z.number().int().positive(),
  likes: z.number().int().nonnegative(),
  liked: z.boolean(),
});

export const SessionIdParams = z.object({ session_id: positiveIntString });
export const WinnersBody = z.object({ user_ids: z.array(noControl(z.string().min(1).max(256))).max(1000) });
export const WinnersResponse = z.object({
  session_id: z.number().int().positive(),
  user_ids: z.array(z.string()),
});

export const UserIdParams = z.object({ user_id: noControl(z.string().min(1).max(256)) });
/**
 * An avatar URL: http(s) only (no `javascript:`, `data:` or credentials), at most 2048 characters, and no spaces or
 * control characters anywhere (the URL parser would drop them, but the text as sent is what is stored and shown).
 */
export const AvatarUrl = z
  .string()
  .max(2048)
  .regex(/^[^\p{Cc}\s]*$/u, 'must not contain spaces or control characters')
  .refine(
    (v) => {
      if (!URL.canParse(v)) return false;
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && u.username === '' && u.password === '';
    },
    { message: 'must be an http(s) URL without credentials' },
  );

export const UserProfileBody = z.object({
  username: displayName().optional(),
  profile_pic: AvatarUrl.nullable().optional(),
});
export const UserResponse = z.object({
  user_id: z.string(),
  username: z.string(),
  profile_pic: z.string().nullable(),
});

export const DevTokenBody = z.object({
  username: displayName(),
  picture: AvatarUrl.optional(),
  roles: z.array(z.string().min(1).max(100)).max(20).optional(),
});
export const DevTokenResponse = z.object({ token: z.string(), user_id: z.string(), expires_at: z.string() });

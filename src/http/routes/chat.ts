import type { FastifyInstance } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ChatService } from '../../chat/chat-service.js';
import {
  HistoryQuery,
  HistoryResponse,
  MessageIdParams,
  MessageLikeResponse,
  SendMessageBody,
  SessionLikeBody,
  SessionLikeResponse,
  StatusResponse,
} from '../../protocol/http.js';
import { ChatMessageSchema } from '../../protocol/messages.js';
import type { Authenticator } from '../authenticate.js';
import { errorResponses } from '../errors.js';

const security = [{ bearerAuth: [] }];

/** The viewer-facing REST endpoints (SPEC §4). */
export function chatRoutes(app: FastifyInstance, service: ChatService, auth: Authenticator) {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    '/live-chat/status',
    {
      schema: {
        tags: ['chat'],
        summary: 'Chat window state, the active session and the limits',
        security: [...security, { adminKey: [] }],
        // 403: an admin key sent to a node that has none.
        response: { 200: StatusResponse, ...errorResponses(401, 403) },
      },
      onRequest: auth.check('actor'),
    },
    async () => service.status(),
  );

  r.get(
    '/live-chat/messages',
    {
      schema: {
        tags: ['chat'],
        summary: 'Message history, oldest first',
        description:
          'Without `before_id`/`after_id`: the newest `limit` messages. With `before_id`: the newest `limit` older than it ' +
          '(`has_more`: older ones exist). With `after_id` alone: the oldest `limit` newer than it (`has_more`: newer ones ' +
          'exist). `limit` defaults to LIVE_CHAT_MESSAGE_HISTORY_LIMIT; larger values are clamped to it. Without ' +
          '`session_id`: the active session, else the latest one.',
        security: [...security, { adminKey: [] }],
        querystring: HistoryQuery,
        response: { 200: HistoryResponse, ...errorResponses(400, 401, 403, 404) },
      },
      // A page is built by `toWireMessage`, typed as `HistoryResponse`: checking its 50 messages against the
      // schema again on the way out took about 50 µs, a twentieth of the request on PostgreSQL. The contract
      // tests check pages against the schema (test/e2e/chat.test.ts); errors are still checked here.
      serializerCompiler: (route) =>
        route.httpStatus === '200'
          ? (data) => JSON.stringify(data)
          : // Fastify types `schema` as the route's; it is the response schema of `httpStatus`.
            serializerCompiler(route as unknown as Parameters<typeof serializerCompiler>[0]),
      onRequest: auth.check('actor'),
    },
    async (request) => {
      const actor = auth.actorOf(request);
      return service.history(actor.kind === 'user' ? actor.user.userId : null, request.query);
    },
  );

  r.post(
    '/live-chat/messages',
    {
      schema: {
        tags: ['chat'],
        summary: 'Send a message (same rules as over the WebSocket)',
        description:
          'Answered after the message is committed. A retry with the same `client_msg_id` returns the original ' +
          'message (also 201, with header `Idempotent-Replayed: true`) and stores nothing new; a retry of a ' +
          'message deleted meanwhile gets 404 `not_found`.',
        security,
        body: SendMessageBody,
        response: { 201: ChatMessageSchema, ...errorResponses(400, 401, 404, 409, 413, 415, 429) },
      },
      onRequest: auth.check('user'),
    },
    async (request, reply) => {
      const user = auth.userOf(request);
      const { message, duplicate } = await service.sendMessage(user, {
        message: request.body.message,
        clientMsgId: request.body.client_msg_id,
        sessionId: request.body.session_id,
      });
      if (duplicate) reply.header('idempotent-replayed', 'true');
      return reply.code(201).send(message);
    },
  );

  r.post(
    '/live-chat/like',
    {
      schema: {
        tags: ['chat'],
        summary: 'One heart for the session (repeatable, rate limited)',
        security,
        body: SessionLikeBody,
        response: { 200: SessionLikeResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 429) },
      },
      onRequest: auth.check('user'),
    },
    async (request) => service.likeSession(auth.userOf(request), request.body?.session_id),
  );

  for (const liked of [true, false]) {
    r.route({
      method: liked ? 'POST' : 'DELETE',
      url: '/live-chat/like-message/:message_id',
      schema: {
        tags: ['chat'],
        summary: liked ? 'Like a message (once per user; a repeat is a no-op)' : 'Take a message like back',
        security,
        params: MessageIdParams,
        response: { 200: MessageLikeResponse, ...errorResponses(400, 401, 404, 409, 414, 429) },
      },
      onRequest: auth.check('user'),
      // The response schema keeps `message_id`, `likes` and `liked` (`changed` is for the WebSocket's answer).
      handler: async (request) => service.likeMessage(auth.userOf(request), request.params.message_id, liked),
    });
  }

  r.delete(
    '/live-chat/messages/:message_id',
    {
      schema: {
        tags: ['moderation'],
        summary: 'Delete a message (HOST or admin key); viewers receive `message_deleted`',
        security: [...security, { adminKey: [] }],
        params: MessageIdParams,
        response: {
          200: z.object({ message_id: z.number().int(), deleted: z.literal(true) }),
          ...errorResponses(400, 401, 403, 404, 414),
        },
      },
      onRequest: auth.check('hostOrAdmin'),
    },
    async (request) => {
      await service.deleteMessage(request.params.message_id);
      request.log.info({ by: auth.byWhom(request), message: request.params.message_id }, 'message deleted');
      return { message_id: request.params.message_id, deleted: true as const };
    },
  );
}

import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ChatService } from '../../chat/chat-service.js';
import {
  SessionIdParams,
  UserIdParams,
  UserProfileBody,
  UserResponse,
  WinnersBody,
  WinnersResponse,
} from '../../protocol/http.js';
import type { Authenticator } from '../authenticate.js';
import { errorResponses } from '../errors.js';

/** Endpoints for HOSTs and the draw backend. */
export function adminRoutes(app: FastifyInstance, service: ChatService, auth: Authenticator) {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post(
    '/live-chat/sessions/:session_id/winners',
    {
      schema: {
        tags: ['admin'],
        summary: "Set the session's winners (HOST or admin key)",
        description:
          'Replaces the winners of the session. Their past and future messages in it show WINNER; connected viewers ' +
          'receive `winner_update`. An empty list clears the winners.',
        security: [{ bearerAuth: [] }, { adminKey: [] }],
        params: SessionIdParams,
        body: WinnersBody,
        response: { 200: WinnersResponse, ...errorResponses(400, 401, 403, 404, 413, 414, 415) },
      },
      onRequest: auth.check('hostOrAdmin'),
    },
    async (request) => {
      const result = await service.setWinners(request.params.session_id, request.body.user_ids);
      // Who changed a draw's winners, for the record (HOSTs may do it on any session).
      request.log.info(
        { by: auth.byWhom(request), session: result.session_id, winners: result.user_ids },
        'winners set',
      );
      return result;
    },
  );

  r.put(
    '/live-chat/users/:user_id',
    {
      schema: {
        tags: ['admin'],
        summary: "Set a user's name and avatar (admin key)",
        description:
          "For tokens without `name`/`picture` claims. A token's own claims, when present, win over this profile.",
        security: [{ adminKey: [] }],
        params: UserIdParams,
        body: UserProfileBody,
        response: { 200: UserResponse, ...errorResponses(400, 401, 403, 413, 414, 415) },
      },
      onRequest: auth.check('admin'),
    },
    async (request) => {
      const user = await service.setUserProfile(request.params.user_id, {
        username: request.body.username,
        profilePic: request.body.profile_pic,
      });
      request.log.info({ by: auth.byWhom(request), user: user.id }, 'profile set');
      return { user_id: user.id, username: user.username, profile_pic: user.profilePic };
    },
  );
}

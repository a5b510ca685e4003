import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Clock } from '../../domain/clock.js';
import { DevTokenBody, DevTokenResponse } from '../../protocol/http.js';
import { type DevKeys, mintDevToken } from '../auth/dev-auth.js';
import { errorResponses } from '../errors.js';

/** Dev auth mode only (never registered in production): mint tokens and publish the signing key. */
/** `hostRole`: `AUTH_HOST_ROLE`; a dev token asking for `host` carries it too, so "Join as host" makes a HOST. */
export function devRoutes(app: FastifyInstance, keys: DevKeys, clock: Clock, hostRole: string) {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post(
    '/live-chat/dev/token',
    {
      schema: {
        tags: ['development'],
        summary: 'Mint a dev token (dev auth mode only; absent in production)',
        description:
          'Valid for 24 hours. The same username always maps to the same user id. `roles: ["host"]` makes a HOST ' +
          '(the token then also carries `AUTH_HOST_ROLE` when that is another role).',
        body: DevTokenBody,
        response: { 200: DevTokenResponse, ...errorResponses(400, 413, 415) },
      },
    },
    async (request) => {
      const { roles } = request.body;
      const asked =
        roles?.includes('host') && !roles.includes(hostRole)
          ? { ...request.body, roles: [...roles, hostRole] }
          : request.body;
      const minted = await mintDevToken(keys, asked, clock.now());
      return {
        token: minted.token,
        user_id: minted.userId,
        expires_at: new Date(minted.expiresAt).toISOString(),
      };
    },
  );

  app.get(
    '/.well-known/jwks.json',
    { schema: { tags: ['development'], summary: 'Public keys of the dev token signer' } },
    async () => keys.jwks,
  );
}

import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { ChatService, ChatUser } from '../chat/chat-service.js';
import { ChatError } from '../protocol/errors.js';
import { AuthError, AuthUnavailableError, type TokenVerifier } from './auth/verifier.js';

export type Actor = { kind: 'admin' } | { kind: 'user'; user: ChatUser };

/** What a route asks of a request's credentials (`Authenticator.check`). */
export type Needs = 'user' | 'actor' | 'hostOrAdmin' | 'admin';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Turns request credentials into an actor: a bearer JWT (a user) or `X-Admin-Key` (the draw backend). */
export class Authenticator {
  readonly #adminDigest: Buffer | undefined;
  /** What `check` found, per request, for its handler (`actorOf`, `userOf`). */
  readonly #found = new WeakMap<FastifyRequest, Actor>();

  constructor(
    private readonly verifier: TokenVerifier,
    private readonly service: ChatService,
    adminApiKey: string | undefined,
    private readonly onVerify: (
      result: 'ok' | 'rejected' | 'unavailable',
      reason?: string,
    ) => void = () => {},
  ) {
    this.#adminDigest = adminApiKey ? digest(adminApiKey) : undefined;
  }

  /**
   * A route's `onRequest` hook: the credentials are checked before the body is read and before the body, query
   * and path are validated, so a request without them gets 401, never a 400 that describes the route's schema.
   */
  check(needs: Needs): (request: FastifyRequest) => Promise<void> {
    return async (request) => {
      this.#found.set(request, await this.#actor(needs, request));
    };
  }

  /** Who `check` let in. */
  actorOf(request: FastifyRequest): Actor {
    const actor = this.#found.get(request);
    if (!actor) throw new Error(`route ${request.routeOptions.url} has no Authenticator.check`);
    return actor;
  }

  /** Who made a moderation change, for the log: `admin key`, or the HOST's user id. */
  byWhom(request: FastifyRequest): string {
    const actor = this.actorOf(request);
    return actor.kind === 'admin' ? 'admin key' : actor.user.userId;
  }

  /** The user `check('user')` let in. */
  userOf(request: FastifyRequest): ChatUser {
    const actor = this.actorOf(request);
    if (actor.kind !== 'user') throw new Error(`route ${request.routeOptions.url} checks for a user`);
    return actor.user;
  }

  /** Checks a token and resolves its user; throws `ChatError('unauthorized')`. */
  async userFromToken(token: string): Promise<{ user: ChatUser; expiresAt: number }> {
    try {
      const identity = await this.verifier.verify(token);
      this.onVerify('ok');
      return { user: await this.service.resolveUser(identity), expiresAt: identity.expiresAt };
    } catch (err) {
      if (err instanceof AuthUnavailableError) this.onVerify('unavailable', err.reason);
      else if (err instanceof AuthError) {
        this.onVerify('rejected', err.reason);
        throw new ChatError('unauthorized', 'The token is missing, invalid or expired.');
      }
      throw err;
    }
  }

  /**
   * What the request's credentials make of it. `actor`: the admin key when the request carries one (it must be
   * right), else a user token; `hostOrAdmin`: that, and a user must be a HOST.
   */
  async #actor(needs: Needs, request: FastifyRequest): Promise<Actor> {
    switch (needs) {
      case 'user':
        return this.#user(request);
      case 'admin':
        return this.#admin(request);
      case 'actor':
        return request.headers['x-admin-key'] !== undefined ? this.#admin(request) : this.#user(request);
      case 'hostOrAdmin': {
        const actor = await this.#actor('actor', request);
        if (actor.kind === 'user' && !actor.user.isHost) {
          throw new ChatError('forbidden', 'Only a HOST or the draw backend can do this.');
        }
        return actor;
      }
    }
  }

  async #user(request: FastifyRequest): Promise<Actor> {
    const token = bearer(request);
    if (!token) throw new ChatError('unauthorized', 'Send Authorization: Bearer <token>.');
    return { kind: 'user', user: (await this.userFromToken(token)).user };
  }

  #admin(request: FastifyRequest): Actor {
    const key = request.headers['x-admin-key'];
    if (typeof key !== 'string' || key === '') {
      throw new ChatError('unauthorized', 'This endpoint needs X-Admin-Key.');
    }
    if (!this.#adminDigest) throw new ChatError('forbidden', 'LIVE_CHAT_ADMIN_API_KEY is not configured.');
    if (!timingSafeEqual(digest(key), this.#adminDigest))
      throw new ChatError('unauthorized', 'Wrong admin key.');
    return { kind: 'admin' };
  }
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

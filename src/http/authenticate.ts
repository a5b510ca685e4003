import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { ChatService, ChatUser } from '../chat/chat-service.js';
import { ChatError } from '../protocol/errors.js';
import { AuthError, type TokenVerifier } from './auth/verifier.js';

export type Actor = { kind: 'admin' } | { kind: 'user'; user: ChatUser };

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Turns request credentials into an actor: a bearer JWT (a user) or `X-Admin-Key` (the draw backend). */
export class Authenticator {
  readonly #adminDigest: Buffer | undefined;

  constructor(
    private readonly verifier: TokenVerifier,
    private readonly service: ChatService,
    adminApiKey: string | undefined,
    private readonly onVerify: (result: 'ok' | 'rejected', reason?: string) => void = () => {},
  ) {
    this.#adminDigest = adminApiKey ? digest(adminApiKey) : undefined;
  }

  /** Checks a token and resolves its user; throws `ChatError('unauthorized')`. */
  async userFromToken(token: string): Promise<{ user: ChatUser; expiresAt: number }> {
    try {
      const identity = await this.verifier.verify(token);
      this.onVerify('ok');
      return { user: await this.service.resolveUser(identity), expiresAt: identity.expiresAt };
    } catch (err) {
      if (err instanceof AuthError) {
        this.onVerify('rejected', err.reason);
        throw new ChatError('unauthorized', 'The token is missing, invalid or expired.');
      }
      throw err;
    }
  }

  async user(request: FastifyRequest): Promise<ChatUser> {
    const token = bearer(request);
    if (!token) throw new ChatError('unauthorized', 'Send Authorization: Bearer <token>.');
    return (await this.userFromToken(token)).user;
  }

  /** The admin key when the request carries one (it must be right), else a user token. */
  async actor(request: FastifyRequest): Promise<Actor> {
    if (request.headers['x-admin-key'] !== undefined) {
      this.admin(request);
      return { kind: 'admin' };
    }
    return { kind: 'user', user: await this.user(request) };
  }

  admin(request: FastifyRequest): void {
    const key = request.headers['x-admin-key'];
    if (typeof key !== 'string' || key === '') {
      throw new ChatError('unauthorized', 'This endpoint needs X-Admin-Key.');
    }
    if (!this.#adminDigest) throw new ChatError('forbidden', 'LIVE_CHAT_ADMIN_API_KEY is not configured.');
    if (!timingSafeEqual(digest(key), this.#adminDigest))
      throw new ChatError('unauthorized', 'Wrong admin key.');
  }

  /** A HOST user or the admin key. */
  async hostOrAdmin(request: FastifyRequest): Promise<Actor> {
    const actor = await this.actor(request);
    if (actor.kind === 'user' && !actor.user.isHost) {
      throw new ChatError('forbidden', 'Only a HOST or the draw backend can do this.');
    }
    return actor;
  }
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

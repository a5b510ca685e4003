import { z } from 'zod';
import { compiled } from '../protocol/compile.js';
import type { StoredMessage } from '../store/types.js';

/** What a node tells the others (and itself) after a commit. Ids and counts are the committed values. */
export type BusEvent =
  | { kind: 'message'; sessionId: number; message: StoredMessage; prevId: number; committedAt: number }
  | { kind: 'session_likes'; sessionId: number; totalLikes: number; version: number }
  | { kind: 'message_likes'; sessionId: number; messageId: number; likes: number; version: number }
  | { kind: 'message_deleted'; sessionId: number; messageId: number }
  /** `version`: the session's write_seq of the change (absent from nodes of an older release: applied as it comes). */
  | { kind: 'winners'; sessionId: number; userIds: string[]; version?: number }
  /** A node's viewers changed: others recount the distinct viewers. */
  | { kind: 'presence'; sessionId: number }
  /** The draw backend changed a user's profile (`PUT /live-chat/users/{id}`): nodes forget what they cached. */
  | { kind: 'profile'; sessionId: number; userId: string };

export type BusHandler = (events: readonly BusEvent[]) => void;

/**
 * Carries committed events to every node. The in-process bus delivers them to this node only; the Redis bus
 * also delivers them to the others. A bus is a doorbell: the database stays the source of truth, and a node
 * that misses a publish finds the gap and reads it from the database.
 */
export interface Bus {
  /** True when other nodes may publish too (their events can arrive late, out of order, or not at all). */
  readonly shared: boolean;
  /** False while the shared transport is unreachable (this node still delivers its own events). */
  readonly healthy: boolean;
  publish(events: readonly BusEvent[]): void;
  subscribe(handler: BusHandler): void;
  /** Start or stop receiving a session's events from other nodes. */
  joinSession(sessionId: number): void;
  leaveSession(sessionId: number): void;
  /** Called when the shared transport comes back after an outage: time to catch up from the database. */
  onReconnect(listener: () => void): void;
  close(): Promise<void>;
}

/** One node: delivery is synchronous and in publish order, which is commit order. */
export class LocalBus implements Bus {
  readonly shared = false;
  readonly healthy = true;
  readonly #handlers: BusHandler[] = [];

  publish(events: readonly BusEvent[]): void {
    if (events.length === 0) return;
    for (const handler of this.#handlers) handler(events);
  }

  subscribe(handler: BusHandler): void {
    this.#handlers.push(handler);
  }

  joinSession(): void {}
  leaveSession(): void {}
  onReconnect(): void {}

  async close(): Promise<void> {
    this.#handlers.length = 0;
  }
}

// ---------------------------------------------------------------- inter-node wire format

const id = z.number().int().positive();
const StoredMessageSchema = z.object({
  id,
  sessionId: id,
  userId: z.string().max(256),
  username: z.string().max(1000),
  profilePic: z.string().max(4096).nullable(),
  isHost: z.boolean(),
  message: z.string().max(1_000_000),
  createdAt: z.number(),
  likes: z.number().int().nonnegative(),
  clientMsgId: z.string().max(64).nullable(),
});

const BusEventSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('message'),
    sessionId: id,
    message: StoredMessageSchema,
    prevId: z.number().int().nonnegative(),
    committedAt: z.number(),
  }),
  z.object({
    kind: z.literal('session_likes'),
    sessionId: id,
    totalLikes: z.number().int().nonnegative(),
    version: z.number().int(),
  }),
  z.object({
    kind: z.literal('message_likes'),
    sessionId: id,
    messageId: id,
    likes: z.number().int().nonnegative(),
    version: z.number().int(),
  }),
  z.object({ kind: z.literal('message_deleted'), sessionId: id, messageId: id }),
  z.object({
    kind: z.literal('winners'),
    sessionId: id,
    userIds: z.array(z.string().max(256)).max(10_000),
    version: z.number().int().optional(),
  }),
  z.object({ kind: z.literal('presence'), sessionId: id }),
  z.object({ kind: z.literal('profile'), sessionId: id, userId: z.string().max(256) }),
]);

/** One publish: the events of one commit for one session, from one node. */
export const BusEnvelopeSchema = z.object({
  v: z.literal(1),
  node: z.string().min(1).max(200),
  events: z.array(BusEventSchema).max(100_000),
});
export type BusEnvelope = z.infer<typeof BusEnvelopeSchema>;
/** The same, compiled (src/protocol/compile.ts): every node parses every envelope. */
const BusEnvelopeParser = compiled(BusEnvelopeSchema);

/** Parses an inter-node payload; malformed ones are refused with a reason, never thrown. */
export function parseEnvelope(
  payload: string,
): { ok: true; envelope: BusEnvelope } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = BusEnvelopeParser.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: `${issue?.path.join('.') || 'envelope'}: ${issue?.message ?? 'invalid'}` };
  }
  return { ok: true, envelope: parsed.data as BusEnvelope };
}

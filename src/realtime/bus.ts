import type { StoredMessage } from '../store/types.js';

/** What a node tells the others (and itself) after a commit. Ids and counts are the committed values. */
export type BusEvent =
  | { kind: 'message'; sessionId: number; message: StoredMessage; committedAt: number }
  | { kind: 'session_likes'; sessionId: number; totalLikes: number }
  | { kind: 'message_likes'; sessionId: number; messageId: number; likes: number }
  | { kind: 'message_deleted'; sessionId: number; messageId: number }
  | { kind: 'winners'; sessionId: number; userIds: string[] };

export type BusHandler = (events: readonly BusEvent[]) => void;

/**
 * Carries committed events to every node. The in-process bus delivers them to this node only; a shared bus
 * (Redis) also delivers them to the others. A bus is a doorbell: the database stays the source of truth.
 */
export interface Bus {
  publish(events: readonly BusEvent[]): void;
  subscribe(handler: BusHandler): void;
  close(): Promise<void>;
}

/** One node: delivery is synchronous and in publish order, which is commit order. */
export class LocalBus implements Bus {
  readonly #handlers: BusHandler[] = [];

  publish(events: readonly BusEvent[]): void {
    if (events.length === 0) return;
    for (const handler of this.#handlers) handler(events);
  }

  subscribe(handler: BusHandler): void {
    this.#handlers.push(handler);
  }

  async close(): Promise<void> {
    this.#handlers.length = 0;
  }
}

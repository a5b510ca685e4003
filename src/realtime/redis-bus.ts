import type { Redis } from 'ioredis';
import type { Log } from '../chat/chat-service.js';
import { type Bus, type BusEvent, type BusHandler, parseEnvelope } from './bus.js';

export const sessionChannel = (prefix: string, sessionId: number) => `${prefix}session:${sessionId}`;

/**
 * Redis pub/sub between nodes. A node delivers its own events locally first (so its viewers never wait on
 * Redis), then publishes them; other nodes' events arrive through the session channel. Publishes made while
 * Redis is away are dropped on purpose: the receivers' sequencers read the gap from the database.
 */
export class RedisBus implements Bus {
  readonly shared = true;
  readonly #handlers: BusHandler[] = [];
  readonly #reconnectListeners: Array<() => void> = [];
  readonly #sessions = new Set<number>();
  #wasDown = false;
  #closed = false;

  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly nodeId: string,
    private readonly prefix: string,
    private readonly log: Log,
    private readonly onDropped: (reason: string) => void = () => {},
  ) {
    sub.on('messageBuffer', (channel: Buffer, payload: Buffer) =>
      this.#onMessage(channel.toString(), payload),
    );
    const down = () => {
      if (this.#closed || this.#wasDown) return;
      this.#wasDown = true;
      this.log.warn(
        { node: nodeId },
        'redis unreachable: serving this node only; catching up when it is back',
      );
    };
    const up = () => {
      if (!this.#wasDown || this.#closed) return;
      if (this.pub.status !== 'ready' || this.sub.status !== 'ready') return;
      this.#wasDown = false;
      this.log.info({ node: nodeId }, 'redis back: catching up from the database');
      for (const l of this.#reconnectListeners) l();
    };
    for (const client of [pub, sub]) {
      client.on('close', down);
      client.on('end', down);
      client.on('ready', up);
    }
  }

  get healthy(): boolean {
    return this.pub.status === 'ready' && this.sub.status === 'ready';
  }

  publish(events: readonly BusEvent[]): void {
    if (events.length === 0) return;
    for (const handler of this.#handlers) handler(events);
    if (this.pub.status !== 'ready') return;
    const bySession = new Map<number, BusEvent[]>();
    for (const e of events) {
      const list = bySession.get(e.sessionId) ?? [];
      list.push(e);
      bySession.set(e.sessionId, list);
    }
    for (const [sessionId, list] of bySession) {
      const payload = JSON.stringify({ v: 1, node: this.nodeId, events: list });
      this.pub.publish(sessionChannel(this.prefix, sessionId), payload).catch((err: unknown) => {
        this.log.debug({ err }, 'redis publish failed; receivers fill the gap from the database');
      });
    }
  }

  subscribe(handler: BusHandler): void {
    this.#handlers.push(handler);
  }

  joinSession(sessionId: number): void {
    if (this.#sessions.has(sessionId)) return;
    this.#sessions.add(sessionId);
    // ioredis re-subscribes by itself after a reconnect.
    this.sub.subscribe(sessionChannel(this.prefix, sessionId)).catch((err: unknown) => {
      this.log.warn({ err, session: sessionId }, 'redis subscribe failed; will retry on reconnect');
    });
  }

  leaveSession(sessionId: number): void {
    if (!this.#sessions.delete(sessionId)) return;
    this.sub.unsubscribe(sessionChannel(this.prefix, sessionId)).catch(() => {});
  }

  onReconnect(listener: () => void): void {
    this.#reconnectListeners.push(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#handlers.length = 0;
  }

  #onMessage(channel: string, payload: Buffer): void {
    if (payload.length > 64 * 1024 * 1024) {
      this.onDropped('too large');
      return;
    }
    const parsed = parseEnvelope(payload.toString());
    if (!parsed.ok) {
      this.onDropped(parsed.reason);
      this.log.warn({ channel, reason: parsed.reason }, 'dropped a malformed inter-node message');
      return;
    }
    const { envelope } = parsed;
    if (envelope.node === this.nodeId) return;
    const events = envelope.events.filter((e) => sessionChannel(this.prefix, e.sessionId) === channel);
    if (events.length === 0) return;
    for (const handler of this.#handlers) handler(events);
  }
}

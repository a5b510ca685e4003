import type { Redis } from 'ioredis';
import type { Log } from '../chat/chat-service.js';
import { type Bus, type BusEvent, type BusHandler, parseEnvelope } from './bus.js';

export const sessionChannel = (prefix: string, sessionId: number) => `${prefix}session:${sessionId}`;

/** After a SUBSCRIBE or UNSUBSCRIBE failed on a connection that is still up, the next try (ms). */
const RESYNC_MS = 1_000;

/**
 * Redis pub/sub between nodes. A node delivers its own events locally first (so its viewers never wait on
 * Redis), then publishes them; other nodes' events arrive through the session channel. Publishes made while
 * Redis is away are dropped on purpose: the receivers' sequencers read the gap from the database.
 *
 * The channels the node wants (its sessions) are kept here, not in ioredis: on every ready connection of the
 * subscriber, and after every join and leave, the bus makes the connection's subscriptions equal that set
 * (`#sync`). ioredis's own re-subscription renews only the channels it had confirmed before an outage: a session
 * joined while Redis was away (a node started then, a window that changed then) was never subscribed, and one left
 * then stayed subscribed, so the node heard other nodes only through the database poll for that whole session.
 */
export class RedisBus implements Bus {
  readonly shared = true;
  readonly #handlers: BusHandler[] = [];
  readonly #reconnectListeners: Array<() => void> = [];
  /** The sessions whose channels this node wants. */
  readonly #sessions = new Set<number>();
  /** Channels subscribed on the subscriber's current connection (confirmed by Redis). */
  readonly #subscribed = new Set<string>();
  /** Bumped whenever the subscriber's connection closes: a confirmation from an earlier one is void. */
  #connection = 0;
  #syncing = false;
  #syncAgain = false;
  #resync: NodeJS.Timeout | undefined;
  #syncFailing = false;
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
    for (const client of [pub, sub]) {
      client.on('close', down);
      client.on('end', down);
    }
    sub.on('close', () => {
      this.#connection++;
      this.#subscribed.clear();
    });
    // A new connection has no subscriptions: the wanted ones are made, then the node catches up (`#up`).
    sub.on('ready', () => this.#sync());
    pub.on('ready', () => this.#up());
  }

  get healthy(): boolean {
    return this.pub.status === 'ready' && this.sub.status === 'ready';
  }

  /** Redis is back (both connections up, the subscriptions made): read what was missed meanwhile. */
  #up(): void {
    if (!this.#wasDown || this.#closed || !this.healthy || !this.#inSync()) return;
    this.#wasDown = false;
    this.log.info({ node: this.nodeId }, 'redis back: catching up from the database');
    for (const l of this.#reconnectListeners) l();
  }

  #wantedChannels(): Set<string> {
    return new Set([...this.#sessions].map((id) => sessionChannel(this.prefix, id)));
  }

  #inSync(): boolean {
    const wanted = this.#wantedChannels();
    return wanted.size === this.#subscribed.size && [...wanted].every((c) => this.#subscribed.has(c));
  }

  /**
   * Makes the subscriber's subscriptions equal the wanted channels: subscribes what is missing, unsubscribes what
   * is no longer wanted. One at a time; a change meanwhile runs it again. While the subscriber is not ready it
   * does nothing: its next ready runs it.
   */
  #sync(): void {
    if (this.#closed) return;
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    if (this.sub.status !== 'ready') return;
    this.#syncing = true;
    const connection = this.#connection;
    void this.#syncOnce()
      .then(
        () => {
          if (this.#syncFailing) this.log.info({ node: this.nodeId }, 'redis subscriptions made');
          this.#syncFailing = false;
          this.#up();
        },
        (err: unknown) => {
          // The connection closed under it: the next ready makes the subscriptions.
          if (connection !== this.#connection) return;
          if (!this.#syncFailing) {
            this.#syncFailing = true;
            this.log.warn({ err, node: this.nodeId }, 'redis subscribe failed; retrying');
          }
          // Still connected (else the next ready does it): try again shortly.
          if (!this.#resync && !this.#closed) {
            this.#resync = setTimeout(() => {
              this.#resync = undefined;
              this.#sync();
            }, RESYNC_MS);
            this.#resync.unref();
          }
        },
      )
      .finally(() => {
        this.#syncing = false;
        if (this.#syncAgain) {
          this.#syncAgain = false;
          this.#sync();
        }
      });
  }

  async #syncOnce(): Promise<void> {
    const connection = this.#connection;
    const wanted = this.#wantedChannels();
    const missing = [...wanted].filter((c) => !this.#subscribed.has(c));
    const stale = [...this.#subscribed].filter((c) => !wanted.has(c));
    if (missing.length > 0) {
      await this.sub.subscribe(...missing);
      if (connection === this.#connection) for (const c of missing) this.#subscribed.add(c);
    }
    if (stale.length > 0) {
      await this.sub.unsubscribe(...stale);
      if (connection === this.#connection) for (const c of stale) this.#subscribed.delete(c);
    }
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
    this.#sync();
  }

  leaveSession(sessionId: number): void {
    if (!this.#sessions.delete(sessionId)) return;
    this.#sync();
  }

  onReconnect(listener: () => void): void {
    this.#reconnectListeners.push(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#resync);
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

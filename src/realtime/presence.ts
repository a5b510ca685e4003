import type { Redis } from 'ioredis';
import type { Log } from '../chat/chat-service.js';

/** Who is watching: distinct users per session, on this node or across all nodes. */
export interface Presence {
  /** A user's first connection to a session on this node (`active`) or their last one closed. */
  changed(sessionId: number, userId: string, active: boolean): void;
  /** Distinct viewers of the session across all nodes (the last known figure). */
  count(sessionId: number): number;
  /** Whether the user still has a connection to the session on another node. */
  elsewhere(sessionId: number, userId: string): Promise<boolean>;
  /** Called whenever a session's count changes. */
  onCount(listener: (sessionId: number, count: number) => void): void;
  /** Another node's viewers changed: count again soon. */
  recount(sessionId: number): void;
  /** Every user connected to the session on a live node, or null when that cannot be known right now. */
  members(sessionId: number): Promise<Set<string> | null>;
  close(): Promise<void>;
}

export interface LocalViewers {
  sessions(): number[];
  users(sessionId: number): string[];
  count(sessionId: number): number;
}

/** One node: the hub's own rooms are the whole truth. */
export class LocalPresence implements Presence {
  readonly #listeners: Array<(sessionId: number, count: number) => void> = [];

  constructor(private readonly local: LocalViewers) {}

  changed(sessionId: number): void {
    const n = this.local.count(sessionId);
    for (const l of this.#listeners) l(sessionId, n);
  }

  count(sessionId: number): number {
    return this.local.count(sessionId);
  }

  async elsewhere(): Promise<boolean> {
    return false;
  }

  onCount(listener: (sessionId: number, count: number) => void): void {
    this.#listeners.push(listener);
  }

  recount(): void {}

  async members(sessionId: number): Promise<Set<string>> {
    return new Set(this.local.users(sessionId));
  }

  async close(): Promise<void> {}
}

export interface RedisPresenceOptions {
  /** A node that stops refreshing its viewers for this long no longer counts them. */
  ttlMs?: number;
  /** How often a node refreshes its viewers' expiry and recounts. */
  beatMs?: number;
  /** Tell the other nodes to recount (a `presence` event on the bus). */
  ring(sessionId: number): void;
}

/**
 * Distinct viewers across nodes (DESIGN §4): each node keeps a Redis set of its own viewers per session with a
 * short expiry it refreshes, and registers itself in the session's node list; the count is the size of the
 * union of the live nodes' sets. A node that dies stops counting within `ttlMs`. While Redis is away each node
 * counts what it can see: its own viewers.
 */
export class RedisPresence implements Presence {
  readonly #listeners: Array<(sessionId: number, count: number) => void> = [];
  readonly #counts = new Map<number, number>();
  readonly #pending = new Map<number, NodeJS.Timeout>();
  /**
   * Sessions with a join or leave Redis did not take (away, or the write failed): their sets are rewritten from
   * this node's viewers at the next beat. A refresh of the expiry alone would keep a set that a short outage made
   * wrong (a leave during it counted for ever, a join never) as long as the node has viewers there.
   */
  readonly #dirty = new Set<number>();
  readonly #ttlMs: number;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly local: LocalViewers,
    private readonly nodeId: string,
    private readonly prefix: string,
    private readonly log: Log,
    private readonly options: RedisPresenceOptions,
  ) {
    this.#ttlMs = options.ttlMs ?? 15_000;
    this.#timer = setInterval(() => void this.#beat(), options.beatMs ?? 5_000);
    this.#timer.unref();
  }

  #setKey(sessionId: number, nodeId = this.nodeId): string {
    return `${this.prefix}viewers:${sessionId}:${nodeId}`;
  }

  #nodesKey(sessionId: number): string {
    return `${this.prefix}viewer-nodes:${sessionId}`;
  }

  changed(sessionId: number, userId: string, active: boolean): void {
    this.#publishLocalCount(sessionId);
    if (this.redis.status !== 'ready') {
      this.#dirty.add(sessionId);
      return;
    }
    const key = this.#setKey(sessionId);
    const m = this.redis.multi();
    if (active) m.sadd(key, userId);
    else m.srem(key, userId);
    m.pexpire(key, this.#ttlMs);
    m.zadd(this.#nodesKey(sessionId), Date.now(), this.nodeId);
    m.pexpire(this.#nodesKey(sessionId), this.#ttlMs * 4);
    m.exec()
      .then(() => {
        this.options.ring(sessionId);
        this.recount(sessionId);
      })
      .catch((err: unknown) => {
        this.#dirty.add(sessionId);
        this.log.debug({ err }, 'presence update failed');
      });
  }

  count(sessionId: number): number {
    const local = this.local.count(sessionId);
    if (this.redis.status !== 'ready') return local;
    return Math.max(this.#counts.get(sessionId) ?? local, local);
  }

  async elsewhere(sessionId: number, userId: string): Promise<boolean> {
    if (this.redis.status !== 'ready') return false;
    const nodes = await this.#liveNodes(sessionId);
    const others = nodes.filter((n) => n !== this.nodeId);
    if (others.length === 0) return false;
    const m = this.redis.multi();
    for (const n of others) m.sismember(this.#setKey(sessionId, n), userId);
    const res = (await m.exec()) ?? [];
    return res.some(([err, v]) => !err && v === 1);
  }

  onCount(listener: (sessionId: number, count: number) => void): void {
    this.#listeners.push(listener);
  }

  recount(sessionId: number): void {
    if (this.#pending.has(sessionId) || this.#closed) return;
    const t = setTimeout(() => {
      this.#pending.delete(sessionId);
      void this.#count(sessionId);
    }, 50);
    t.unref();
    this.#pending.set(sessionId, t);
  }

  async members(sessionId: number): Promise<Set<string> | null> {
    if (this.redis.status !== 'ready') return null;
    try {
      const nodes = await this.#liveNodes(sessionId);
      if (nodes.length === 0) return new Set();
      const users = await this.redis.sunion(...nodes.map((node) => this.#setKey(sessionId, node)));
      return new Set([...users, ...this.local.users(sessionId)]);
    } catch {
      return null;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const t of this.#pending.values()) clearTimeout(t);
    if (this.redis.status !== 'ready') return;
    // A clean stop takes this node's viewers out at once instead of after the expiry.
    const m = this.redis.multi();
    for (const sessionId of this.local.sessions()) {
      m.del(this.#setKey(sessionId));
      m.zrem(this.#nodesKey(sessionId), this.nodeId);
    }
    await m.exec().catch(() => {});
    for (const sessionId of this.local.sessions()) this.options.ring(sessionId);
  }

  async #liveNodes(sessionId: number): Promise<string[]> {
    const key = this.#nodesKey(sessionId);
    const m = this.redis.multi();
    m.zremrangebyscore(key, '-inf', Date.now() - this.#ttlMs);
    m.zrange(key, 0, -1);
    const res = (await m.exec()) ?? [];
    const nodes = res[1]?.[1];
    return Array.isArray(nodes) ? (nodes as string[]) : [];
  }

  async #count(sessionId: number): Promise<void> {
    if (this.redis.status !== 'ready') {
      this.#publishLocalCount(sessionId);
      return;
    }
    try {
      const nodes = await this.#liveNodes(sessionId);
      let n = 0;
      if (nodes.length === 1) {
        n = await this.redis.scard(this.#setKey(sessionId, nodes[0]));
      } else if (nodes.length > 1) {
        const tmp = `${this.prefix}tmp:viewers:${this.nodeId}`;
        const m = this.redis.multi();
        m.sunionstore(tmp, ...nodes.map((node) => this.#setKey(sessionId, node)));
        m.del(tmp);
        const res = (await m.exec()) ?? [];
        n = Number(res[0]?.[1] ?? 0);
      }
      this.#set(sessionId, n);
    } catch (err) {
      this.log.debug({ err }, 'viewer count failed');
      this.#publishLocalCount(sessionId);
    }
  }

  #publishLocalCount(sessionId: number): void {
    this.#set(sessionId, this.count(sessionId));
  }

  #set(sessionId: number, n: number): void {
    const value = Math.max(n, this.local.count(sessionId));
    if (this.#counts.get(sessionId) === value) return;
    this.#counts.set(sessionId, value);
    for (const l of this.#listeners) l(sessionId, value);
  }

  async #beat(): Promise<void> {
    if (this.#closed || this.redis.status !== 'ready') return;
    let writing: number | undefined;
    try {
      // This node's sessions, and those whose last viewer here left while Redis was away (their sets go now).
      for (const sessionId of new Set([...this.local.sessions(), ...this.#dirty])) {
        const users = this.local.users(sessionId);
        const key = this.#setKey(sessionId);
        const dirty = this.#dirty.has(sessionId);
        if (dirty || (users.length > 0 && (await this.redis.pexpire(key, this.#ttlMs)) === 0)) {
          // Gone after a Redis restart, or wrong after a short outage: written afresh in one transaction (a join
          // or leave sent after it is applied after it).
          this.#dirty.delete(sessionId);
          writing = sessionId;
          const m = this.redis.multi().del(key);
          for (let i = 0; i < users.length; i += 1000) m.sadd(key, ...users.slice(i, i + 1000));
          if (users.length > 0) m.pexpire(key, this.#ttlMs);
          await m.exec();
          writing = undefined;
          if (dirty) this.options.ring(sessionId);
        }
        if (users.length > 0) {
          await this.redis.zadd(this.#nodesKey(sessionId), Date.now(), this.nodeId);
          await this.redis.pexpire(this.#nodesKey(sessionId), this.#ttlMs * 4);
        }
        await this.#count(sessionId);
      }
    } catch (err) {
      // A set whose rewrite failed is written afresh by the next beat.
      if (writing !== undefined) this.#dirty.add(writing);
      this.log.debug({ err }, 'presence heartbeat failed');
    }
  }
}

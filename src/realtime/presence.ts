import type { Redis } from 'ioredis';
import type { Log } from '../chat/chat-service.js';
import { everyMs } from '../observability/every.js';

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
  /** How often a node refreshes its viewers and checks for nodes that stopped (at most a third of `ttlMs`). */
  beatMs?: number;
  /** Tell the other nodes to recount (a `presence` event on the bus). */
  ring(sessionId: number): void;
}

/** A node rings the others at most this often per session: a storm of joins is one ring per interval. */
export const RING_INTERVAL_MS = 250;
/** And reads the count at most this often per session when rung (rings of several nodes are one read). */
const RECOUNT_INTERVAL_MS = 250;
/** A ring is answered this much later, so that the rings of several nodes at once make one read. */
const RECOUNT_DELAY_MS = 50;

/**
 * The Lua shared by the scripts. KEYS: this node's set of viewers, the session's nodes (a sorted set: node → time
 * of its last write, by Redis's clock), the session's counts (a hash: `u:<user>` → how many registered nodes have
 * the user, and `#total` → the sum of those, which a lost hash loses with it). ARGV: node id, ms after which a
 * silent node is taken out, key expiry in ms, the prefix of the nodes' set keys.
 */
const PRELUDE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local node, staleMs, keyTtl, setPrefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local function counted(user)
  redis.call('HINCRBY', KEYS[3], 'u:' .. user, 1)
end
local function uncounted(user)
  if redis.call('HINCRBY', KEYS[3], 'u:' .. user, -1) <= 0 then redis.call('HDEL', KEYS[3], 'u:' .. user) end
end
local function distinct()
  return math.max(redis.call('HLEN', KEYS[3]) - 1, 0)
end
local function expire()
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keyTtl) end
end
-- Takes out the nodes that have not written for staleMs (their viewers leave the counts), then checks that the
-- total is the sum of the registered nodes' sets (O(nodes)); when not (keys lost or evicted, a node of an older
-- version), counts everything again from the sets. Returns { distinct viewers, nodes taken out, 1 if recounted }.
local function maintain()
  local reaped = 0
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - staleMs)) do
    if other ~= node then
      local key = setPrefix .. other
      local users = redis.call('SMEMBERS', key)
      for _, user in ipairs(users) do uncounted(user) end
      if #users > 0 then redis.call('HINCRBY', KEYS[3], '#total', -#users) end
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[2], other)
      reaped = reaped + 1
    end
  end
  local nodes = redis.call('ZRANGE', KEYS[2], 0, -1)
  local sum = 0
  for _, other in ipairs(nodes) do sum = sum + redis.call('SCARD', setPrefix .. other) end
  local rebuilt = 0
  if sum ~= tonumber(redis.call('HGET', KEYS[3], '#total') or '0') then
    redis.call('DEL', KEYS[3])
    for _, other in ipairs(nodes) do
      for _, user in ipairs(redis.call('SMEMBERS', setPrefix .. other)) do counted(user) end
    end
    redis.call('HSET', KEYS[3], '#total', sum)
    rebuilt = 1
  end
  expire()
  return { distinct(), reaped, rebuilt }
end
`;

/**
 * The joins and leaves of one turn on this node: O(1) each, and lean (this runs for every join and leave of every
 * node). KEYS as in `PRELUDE`; ARGV: node id, key expiry in ms, '1' if this node may register itself when it is
 * not (it has written nothing for the session since it last knew itself registered), then pairs of '1' join or
 * '0' leave and the user. Returns { distinct viewers, then per change: after a leave, how many nodes still have
 * the user }, or { -1 } when this node is not registered (taken out, or Redis lost its keys): its set must be
 * written afresh. Liveness is the beat's; a batch with more joins than leaves renews the expiry of the keys it grew.
 */
const CHANGES = `
local node, keyTtl = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', KEYS[2], node) then
  if ARGV[3] ~= '1' or redis.call('EXISTS', KEYS[1]) == 1 then return { -1 } end
  local time = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), node)
  redis.call('PEXPIRE', KEYS[2], keyTtl)
end
local out = { 0 }
local delta = 0
for i = 4, #ARGV, 2 do
  local user = ARGV[i + 1]
  local field = 'u:' .. user
  local n = 0
  if ARGV[i] == '1' then
    if redis.call('SADD', KEYS[1], user) == 1 then
      redis.call('HINCRBY', KEYS[3], field, 1)
      delta = delta + 1
    end
  elseif redis.call('SREM', KEYS[1], user) == 1 then
    n = redis.call('HINCRBY', KEYS[3], field, -1)
    if n <= 0 then redis.call('HDEL', KEYS[3], field) end
    delta = delta - 1
  else
    n = tonumber(redis.call('HGET', KEYS[3], field) or '0')
  end
  out[#out + 1] = n
end
if delta ~= 0 then redis.call('HINCRBY', KEYS[3], '#total', delta) end
if delta > 0 then
  redis.call('PEXPIRE', KEYS[1], keyTtl)
  redis.call('PEXPIRE', KEYS[3], keyTtl)
end
out[1] = math.max(redis.call('HLEN', KEYS[3]) - 1, 0)
return out
`;

/**
 * This node's set written afresh from ARGV[5..] (every viewer it has now; none: it leaves the session), counts
 * moved by the difference only; then \`maintain\`. O(this node's viewers): after an outage, or once taken out.
 */
const SYNC = `${PRELUDE}
local want = {}
for i = 5, #ARGV do want[ARGV[i]] = true end
local delta = 0
if redis.call('ZSCORE', KEYS[2], node) then
  for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if want[user] then
      want[user] = nil
    else
      redis.call('SREM', KEYS[1], user)
      uncounted(user)
      delta = delta - 1
    end
  end
else
  -- Not registered: whatever is left under this node's name is in no count (or maintain finds it out).
  redis.call('DEL', KEYS[1])
end
for user in pairs(want) do
  redis.call('SADD', KEYS[1], user)
  counted(user)
  delta = delta + 1
end
if delta ~= 0 then redis.call('HINCRBY', KEYS[3], '#total', delta) end
if #ARGV >= 5 then redis.call('ZADD', KEYS[2], now, node) else redis.call('ZREM', KEYS[2], node) end
return maintain()
`;

/** This node is alive (ARGV[5] '1': it has viewers in the session); then \`maintain\`. {-1} when not registered. */
const BEAT = `${PRELUDE}
if redis.call('ZSCORE', KEYS[2], node) then
  redis.call('ZADD', KEYS[2], now, node)
elseif ARGV[5] == '1' then
  return { -1, 0, 0 }
end
return maintain()
`;

type Args = Array<string | number>;
/** A join or leave waiting for the end of the turn; `waiter`: what `elsewhere` asked about this leave awaits. */
interface Change {
  userId: string;
  active: boolean;
  waiter?: { promise: Promise<boolean>; resolve(elsewhere: boolean): void; reject(err: unknown): void };
}
interface PresenceScripts {
  drawchatPresenceChanges(...args: Args): Promise<number[]>;
  drawchatPresenceSync(...args: Args): Promise<[number, number, number]>;
  drawchatPresenceBeat(...args: Args): Promise<[number, number, number]>;
}

/**
 * Distinct viewers across nodes (DESIGN §4), counted at a Redis cost that grows with neither the number of viewers
 * nor the number of nodes. Each node keeps a Redis set of its own viewers per session and registers itself in the
 * session's node list; beside them, one hash per session counts for each user how many registered nodes have
 * them, and the viewer count is that hash's length (HLEN, O(1)). The joins and leaves of one turn are one script
 * on this node's set and the hash, O(1) a change, whose answer is the new count; the other nodes are rung at
 * most every `RING_INTERVAL_MS` and read the count at most every `RECOUNT_INTERVAL_MS`, however many change. No
 * union of sets is computed (it cost O(all viewers) per recount, and every node recounted up to 20 times a
 * second while viewers came and went anywhere).
 *
 * A node that dies stops writing: the first beat of another node after `ttlMs - beatMs` of silence takes it out
 * (its set's users leave the hash), so its viewers stop counting within `ttlMs`. A node that finds itself taken
 * out (it stalled) or its keys gone (a Redis restart) writes its set afresh, as it does after a join or leave
 * Redis did not take. Each beat also checks, in O(nodes), that the hash's total is the sum of the registered
 * nodes' sets, and counts again from the sets when not. While Redis is away each node counts what it can see:
 * its own viewers.
 */
export class RedisPresence implements Presence {
  readonly #listeners: Array<(sessionId: number, count: number) => void> = [];
  readonly #counts = new Map<number, number>();
  /** Recounts scheduled (see `recount`), and when each session was last recounted. */
  readonly #pending = new Map<number, NodeJS.Timeout>();
  readonly #recountedAt = new Map<number, number>();
  /** Rings scheduled (see `#ring`), and when each session last rang. */
  readonly #ringTimers = new Map<number, NodeJS.Timeout>();
  readonly #rangAt = new Map<number, number>();
  /**
   * Sessions whose set is to be written afresh from this node's viewers: a join or leave Redis did not take
   * (away, or the write failed), or this node found itself no longer registered. A refresh alone would keep a set
   * that a short outage made wrong (a leave during it counted for ever, a join never).
   */
  readonly #dirty = new Set<number>();
  /** Joins and leaves of this turn per session, in order, sent together (see `#flush`). */
  readonly #batches = new Map<number, Change[]>();
  /** Sessions this node has registered in, as far as it knows (a first join may register it). */
  readonly #registered = new Set<number>();
  /** Sets written afresh so far per session: a failed or refused write sent before the last one is covered by it. */
  readonly #syncs = new Map<number, number>();
  readonly #ttlMs: number;
  readonly #beatMs: number;
  readonly #timer: NodeJS.Timeout;
  readonly #scripts: PresenceScripts;
  readonly #rebuildLogGate = everyMs(10_000);
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
    this.#beatMs = Math.min(options.beatMs ?? 2_500, this.#ttlMs / 3);
    redis.defineCommand('drawchatPresenceChanges', { numberOfKeys: 3, lua: CHANGES });
    redis.defineCommand('drawchatPresenceSync', { numberOfKeys: 3, lua: SYNC });
    redis.defineCommand('drawchatPresenceBeat', { numberOfKeys: 3, lua: BEAT });
    this.#scripts = redis as unknown as PresenceScripts;
    this.#timer = setInterval(() => void this.#beat(), this.#beatMs);
    this.#timer.unref();
  }

  #setKey(sessionId: number, nodeId = this.nodeId): string {
    return `${this.prefix}viewers:${sessionId}:${nodeId}`;
  }

  #nodesKey(sessionId: number): string {
    return `${this.prefix}viewer-nodes:${sessionId}`;
  }

  #countsKey(sessionId: number): string {
    return `${this.prefix}viewer-counts:${sessionId}`;
  }

  /** The keys and leading arguments every script takes (see `PRELUDE`). */
  #args(sessionId: number): Args {
    return [
      this.#setKey(sessionId),
      this.#nodesKey(sessionId),
      this.#countsKey(sessionId),
      this.nodeId,
      this.#ttlMs - this.#beatMs,
      this.#ttlMs * 4,
      this.#setKey(sessionId, ''),
    ];
  }

  changed(sessionId: number, userId: string, active: boolean): void {
    this.#publishLocalCount(sessionId);
    if (this.redis.status !== 'ready') {
      this.#dirty.add(sessionId);
      return;
    }
    if (this.#dirty.has(sessionId)) {
      // Written afresh now, this change with it.
      void this.#sync(sessionId);
      return;
    }
    // The hub reports a storm's joins (and a batch of leaves) in one turn: they go to Redis together.
    let batch = this.#batches.get(sessionId);
    if (!batch) {
      batch = [];
      this.#batches.set(sessionId, batch);
      queueMicrotask(() => this.#flush(sessionId));
    }
    batch.push({ userId, active });
  }

  /** Sends the session's batch of joins and leaves (see `CHANGES`). */
  #flush(sessionId: number): void {
    const batch = this.#batches.get(sessionId);
    if (!batch) return;
    this.#batches.delete(sessionId);
    const waiting = batch.filter((c) => c.waiter);
    if (this.redis.status !== 'ready') {
      this.#dirty.add(sessionId);
      for (const c of waiting) c.waiter!.resolve(false);
      return;
    }
    const mayRegister = !this.#registered.has(sessionId);
    this.#registered.add(sessionId);
    const syncs = this.#syncs.get(sessionId) ?? 0;
    const args: Args = [
      this.#setKey(sessionId),
      this.#nodesKey(sessionId),
      this.#countsKey(sessionId),
      this.nodeId,
      this.#ttlMs * 4,
      mayRegister ? '1' : '0',
    ];
    for (const c of batch) args.push(c.active ? '1' : '0', c.userId);
    this.#scripts
      .drawchatPresenceChanges(...args)
      .then((res) => {
        const n = res[0] ?? 0;
        if (n < 0) {
          if (this.#stale(sessionId, syncs)) void this.#rewrite(sessionId);
          // Asked after the rewrite, which has gone out (or an earlier one, whose answer came first).
          for (const c of waiting)
            this.#askElsewhere(sessionId, c.userId).then(c.waiter!.resolve, c.waiter!.reject);
          return;
        }
        this.#set(sessionId, n);
        this.#ring(sessionId);
        for (const [i, c] of batch.entries()) c.waiter?.resolve((res[i + 1] ?? 0) > 0);
      })
      .catch((err: unknown) => {
        if (this.#stale(sessionId, syncs)) this.#dirty.add(sessionId);
        this.log.debug({ err }, 'presence update failed');
        for (const c of waiting) c.waiter!.reject(err);
      });
  }

  /** Whether no write of the whole set went out since `syncs` (so nothing covers what failed then). */
  #stale(sessionId: number, syncs: number): boolean {
    return (this.#syncs.get(sessionId) ?? 0) === syncs;
  }

  count(sessionId: number): number {
    const local = this.local.count(sessionId);
    if (this.redis.status !== 'ready') return local;
    return Math.max(this.#counts.get(sessionId) ?? local, local);
  }

  async elsewhere(sessionId: number, userId: string): Promise<boolean> {
    if (this.redis.status !== 'ready') return false;
    // A leave of this turn, not sent yet: its answer says how many nodes still have the user.
    const batch = this.#batches.get(sessionId);
    // The caller asks right after the leave: it is the last change, the first `findLast` looks at.
    const pending = batch?.findLast((c) => c.userId === userId);
    if (pending && !pending.active) {
      if (!pending.waiter) {
        const waiter = {} as NonNullable<Change['waiter']>;
        waiter.promise = new Promise<boolean>((resolve, reject) => {
          waiter.resolve = resolve;
          waiter.reject = reject;
        });
        pending.waiter = waiter;
      }
      return pending.waiter.promise;
    }
    return this.#askElsewhere(sessionId, userId);
  }

  /** How many registered nodes have the user, less this one (its leave, sent before, is applied by now). */
  async #askElsewhere(sessionId: number, userId: string): Promise<boolean> {
    if (this.redis.status !== 'ready') return false;
    const res =
      (await this.redis
        .multi()
        .hget(this.#countsKey(sessionId), `u:${userId}`)
        .sismember(this.#setKey(sessionId), userId)
        .exec()) ?? [];
    const [[nodesErr, nodes] = [], [mineErr, mine] = []] = res;
    if (nodesErr || mineErr) throw nodesErr ?? mineErr;
    return Number(nodes ?? 0) - Number(mine ?? 0) > 0;
  }

  onCount(listener: (sessionId: number, count: number) => void): void {
    this.#listeners.push(listener);
  }

  recount(sessionId: number): void {
    if (this.#pending.has(sessionId) || this.#closed) return;
    const last = this.#recountedAt.get(sessionId) ?? Number.NEGATIVE_INFINITY;
    const wait = Math.max(RECOUNT_DELAY_MS, last + RECOUNT_INTERVAL_MS - performance.now());
    const t = setTimeout(() => {
      this.#pending.delete(sessionId);
      this.#recountedAt.set(sessionId, performance.now());
      void this.#count(sessionId);
    }, wait);
    t.unref();
    this.#pending.set(sessionId, t);
  }

  async members(sessionId: number): Promise<Set<string> | null> {
    if (this.redis.status !== 'ready') return null;
    try {
      const fields = await this.redis.hkeys(this.#countsKey(sessionId));
      const users = new Set(this.local.users(sessionId));
      for (const f of fields) if (f.startsWith('u:')) users.add(f.slice(2));
      return users;
    } catch {
      return null;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const t of this.#pending.values()) clearTimeout(t);
    for (const t of this.#ringTimers.values()) clearTimeout(t);
    for (const sessionId of [...this.#batches.keys()]) this.#flush(sessionId);
    if (this.redis.status !== 'ready') return;
    // A clean stop takes this node's viewers out at once instead of after `ttlMs`.
    const sessions = new Set([...this.local.sessions(), ...this.#registered]);
    await Promise.all(
      [...sessions].map((sessionId) =>
        this.#scripts.drawchatPresenceSync(...this.#args(sessionId)).catch(() => {}),
      ),
    );
    for (const sessionId of sessions) this.options.ring(sessionId);
  }

  /** Tells the other nodes (at most every `RING_INTERVAL_MS` per session; a later change rides the next ring). */
  #ring(sessionId: number): void {
    if (this.#ringTimers.has(sessionId) || this.#closed) return;
    const wait =
      (this.#rangAt.get(sessionId) ?? Number.NEGATIVE_INFINITY) + RING_INTERVAL_MS - performance.now();
    const ring = () => {
      this.#ringTimers.delete(sessionId);
      this.#rangAt.set(sessionId, performance.now());
      this.options.ring(sessionId);
    };
    if (wait <= 0) {
      ring();
      return;
    }
    const t = setTimeout(ring, wait);
    t.unref();
    this.#ringTimers.set(sessionId, t);
  }

  /** This node found itself no longer registered (taken out while it stalled, or Redis lost its keys). */
  #rewrite(sessionId: number): Promise<void> {
    this.log.info(
      { session: sessionId },
      'presence: this node was no longer registered; writing its viewers afresh',
    );
    return this.#sync(sessionId);
  }

  /** Writes this node's set of the session afresh from its viewers now (none: it leaves the session). */
  async #sync(sessionId: number): Promise<void> {
    // After `close`, which has taken this node's viewers out: nothing may register it again.
    if (this.#closed) return;
    const users = this.local.users(sessionId);
    this.#dirty.delete(sessionId);
    const syncs = (this.#syncs.get(sessionId) ?? 0) + 1;
    this.#syncs.set(sessionId, syncs);
    if (users.length > 0) this.#registered.add(sessionId);
    else this.#registered.delete(sessionId);
    try {
      const res = await this.#scripts.drawchatPresenceSync(...this.#args(sessionId), ...users);
      this.#maintained(sessionId, res);
      this.#ring(sessionId);
    } catch (err) {
      if (this.#stale(sessionId, syncs)) this.#dirty.add(sessionId);
      this.log.debug({ err }, 'presence rewrite failed');
    }
  }

  /** The answer of a script that ran `maintain`. */
  #maintained(sessionId: number, [n, reaped, rebuilt]: [number, number, number]): void {
    if (reaped > 0) {
      this.log.info({ session: sessionId, nodes: reaped }, 'presence: took out the viewers of silent nodes');
      this.#ring(sessionId);
    }
    if (rebuilt > 0) {
      // Every beat while a node of an older version (which counts by union) still runs: logged every 10 s at most.
      if (this.#rebuildLogGate()) {
        this.log.info(
          { session: sessionId },
          'presence: viewer counts did not add up; counted again from the sets',
        );
      }
      this.#ring(sessionId);
    }
    this.#set(sessionId, n);
  }

  async #count(sessionId: number): Promise<void> {
    if (this.redis.status !== 'ready') {
      this.#publishLocalCount(sessionId);
      return;
    }
    try {
      // Less the `#total` field (see `PRELUDE`).
      this.#set(sessionId, Math.max((await this.redis.hlen(this.#countsKey(sessionId))) - 1, 0));
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
    const sessions = this.local.sessions();
    // This node's sessions, and those whose last viewer here left while Redis was away (their sets go now).
    for (const sessionId of new Set([...sessions, ...this.#dirty])) {
      try {
        if (this.#dirty.has(sessionId)) {
          await this.#sync(sessionId);
          continue;
        }
        const syncs = this.#syncs.get(sessionId) ?? 0;
        const hasViewers = this.local.count(sessionId) > 0 ? '1' : '0';
        const res = await this.#scripts.drawchatPresenceBeat(...this.#args(sessionId), hasViewers);
        if (res[0] >= 0) this.#maintained(sessionId, res);
        else if (this.#stale(sessionId, syncs)) await this.#rewrite(sessionId);
      } catch (err) {
        this.log.debug({ err }, 'presence heartbeat failed');
      }
    }
    // Sessions this node has nobody in: a first join there may register it again (none of its viewers can be missing).
    const live = new Set(sessions);
    for (const sessionId of this.#registered) {
      if (!live.has(sessionId) && !this.#dirty.has(sessionId)) this.#registered.delete(sessionId);
    }
  }
}

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import type { Log } from '../chat/chat-service.js';
import type { Settings } from '../config/settings.js';
import type { Clock } from '../domain/clock.js';
import type { Metrics } from '../observability/metrics.js';
import type { Bus } from './bus.js';
import { type Limits, RedisLimits } from './limits.js';
import { type LocalViewers, type Presence, RedisPresence } from './presence.js';
import { RedisBus } from './redis-bus.js';
import { RedisWatchdog } from './redis-watchdog.js';

/**
 * How long any Redis command may take before it fails (and its caller falls back as for an unreachable Redis).
 * Redis answers in well under a millisecond; a second is a Redis that hangs, not a busy one.
 */
const REDIS_COMMAND_TIMEOUT_MS = 1_000;

export interface Cluster {
  readonly nodeId: string;
  readonly bus: Bus;
  readonly limits: Limits;
  createPresence(local: LocalViewers, ring: (sessionId: number) => void): Presence;
  status(): 'ok' | 'unreachable';
  close(): Promise<void>;
}

/**
 * What a node needs to run with others (REDIS_URL): the Redis bus, shared limits and shared viewer counts.
 * The node starts even when Redis is down (it serves its own viewers and catches up when Redis comes back).
 */
export async function connectCluster(
  settings: Settings,
  url: string,
  log: Log,
  metrics: Metrics,
  clock: Clock,
): Promise<Cluster> {
  const nodeId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const base: RedisOptions = {
    // Fail fast while Redis is away: callers fall back instead of queueing behind a dead connection.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // And while it hangs (the connection open, nothing answered): every command settles within this, so that a
    // message, a handshake or a heart waits at most this long before the node's own limits answer it.
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    // A command that timed out has been answered without Redis: it is not sent again after a reconnect (a
    // publish of a like count would arrive late and stale).
    autoResendUnfulfilledCommands: false,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    lazyConnect: true,
  };
  const command = new Redis(url, { ...base, connectionName: `drawchat-${nodeId}` });
  const pub = new Redis(url, { ...base, connectionName: `drawchat-pub-${nodeId}` });
  // The bus makes the subscriptions itself (RedisBus `#sync`): on every ready connection, and at each join and leave.
  const sub = new Redis(url, { ...base, autoResubscribe: false, connectionName: `drawchat-sub-${nodeId}` });
  const clients = [command, pub, sub];
  for (const c of clients) {
    // Errors surface as status changes; without a listener ioredis would print each retry.
    c.on('error', () => {});
    c.on('ready', () => metrics.redisUp.set(clients.every((x) => x.status === 'ready') ? 1 : 0));
    c.on('close', () => metrics.redisUp.set(0));
  }
  // A Redis that hangs keeps its connections `ready`: the watchdog drops them, and they count as down until it
  // answers again.
  const watchdog = new RedisWatchdog({ command, publish: pub, subscribe: sub }, (connection, silentMs) =>
    log.warn(
      { node: nodeId, connection, silent_ms: silentMs },
      'redis stopped answering: dropping the connection and reconnecting',
    ),
  );
  metrics.redisUp.set(0);
  await Promise.all(clients.map((c) => c.connect().catch(() => {})));
  if (clients.some((c) => c.status !== 'ready')) {
    log.warn({ node: nodeId }, 'redis is not reachable at start: serving this node only until it is');
  } else {
    log.info({ node: nodeId }, 'joined the cluster through redis');
  }

  const bus = new RedisBus(pub, sub, nodeId, settings.redisKeyPrefix, log, () => metrics.busDropped.inc());
  const limits = new RedisLimits(
    command,
    {
      messagesPerMinute: settings.maxMessagesPerMinute,
      maxConnectionsPerUser: settings.maxConnectionsPerUser,
    },
    clock,
    nodeId,
    settings.redisKeyPrefix,
    log,
    (what) => metrics.redisFallbacks.inc({ what }),
  );
  return {
    nodeId,
    bus,
    limits,
    createPresence: (local, ring) =>
      new RedisPresence(command, local, nodeId, settings.redisKeyPrefix, log, { ring }),
    status: () => (clients.every((c) => c.status === 'ready') ? 'ok' : 'unreachable'),
    async close() {
      watchdog.stop();
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}

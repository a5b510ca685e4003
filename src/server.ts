import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { ChatService } from './chat/chat-service.js';
import { ADMIN_KEY_MIN_LENGTH, type Settings } from './config/settings.js';
import { type Clock, systemClock } from './domain/clock.js';
import { DrawSchedule } from './domain/schedule.js';
import { buildApp } from './http/app.js';
import { type DevKeys, loadOrCreateDevKeys } from './http/auth/dev-auth.js';
import { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from './http/auth/verifier.js';
import { redactUrl } from './http/redact.js';
import { Metrics } from './observability/metrics.js';
import { type Bus, LocalBus } from './realtime/bus.js';
import { type Cluster, connectCluster } from './realtime/cluster.js';
import { processReadLagMs } from './realtime/read-lag.js';
import { createChatStore } from './store/kysely-store.js';
import type { ChatStore } from './store/types.js';

export interface ServerOptions {
  clock?: Clock;
  logger?: Logger;
  /** Skip process metrics (several servers in one test process). */
  processMetrics?: boolean;
  /**
   * JWKS timings (cooldown between key fetches, key cache age, fetch timeout). Production uses the defaults of
   * src/http/auth/verifier.ts; tests shorten them to see a JWKS outage and its recovery within seconds.
   */
  auth?: Pick<TokenVerifierOptions, 'jwksCooldownMs' | 'jwksCacheMaxAgeMs' | 'fetchTimeoutMs'>;
  /** WebSocket heartbeat period, ms (default 30 s); tests shorten it to see half-open sockets removed. */
  heartbeatMs?: number;
  /** How long new users' profile reads gather after the previous read (default a few ms; see ChatService). */
  userReadWindowMs?: number;
  /**
   * The slack that the per-socket frame budget and this node's heart and like limits give a node that reads late
   * (default: this process's read lag, see src/realtime/read-lag.ts). Tests that count refusals pin it at 0: in a
   * loaded test run the real one lets more through than the limits say.
   */
  readLagMs?: () => number;
}

export interface DrawChatServer {
  readonly app: FastifyInstance;
  readonly service: ChatService;
  readonly store: ChatStore;
  readonly settings: Settings;
  readonly clock: Clock;
  /** Listens on settings.host:settings.port (port 0: any free port); resolves with the base URL. */
  listen(): Promise<string>;
  /** Graceful stop: refuse new work, close sockets with 1001, commit what is queued, close the database. */
  close(): Promise<void>;
}

/** Pending connections the kernel may hold for us before `accept` (see `listen`). */
const LISTEN_BACKLOG = 8192;

export function createLogger(settings: Settings): Logger {
  return pino({
    level: settings.logLevel,
    base: { service: 'draw-chat' },
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-admin-key"]', 'token'],
      censor: '[REDACTED]',
    },
    serializers: {
      req: (req: { method?: string; url?: string; ip?: string }) => ({
        method: req.method,
        url: req.url ? redactUrl(req.url) : undefined,
        ip: req.ip,
      }),
    },
  });
}

/** Composition root: settings in, a running-ready server out. */
export async function createServer(settings: Settings, options: ServerOptions = {}): Promise<DrawChatServer> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger(settings);
  const store = createChatStore(settings.databaseUrl);
  let verifier: TokenVerifier | undefined;
  let bus: Bus | undefined;
  let redis: Cluster | undefined;
  try {
    await store.migrate();
    const devKeys: DevKeys | undefined = settings.devAuth
      ? await loadOrCreateDevKeys(settings.dataDir)
      : undefined;
    if (settings.devAuth) {
      logger.warn(
        'dev auth mode: this server signs its own tokens (POST /live-chat/dev/token). Set AUTH_JWKS_URL or DESCOPE_PROJECT_ID for real users.',
      );
    }
    if (settings.adminApiKey !== undefined && settings.adminApiKey.length < ADMIN_KEY_MIN_LENGTH) {
      logger.warn(
        `LIVE_CHAT_ADMIN_API_KEY is shorter than ${ADMIN_KEY_MIN_LENGTH} characters: fine for a laptop, refused with NODE_ENV=production.`,
      );
    }
    verifier = createTokenVerifier(settings, { ...options.auth, clock, devKeys });
    const metrics = new Metrics({ collectDefault: options.processMetrics !== false });
    const schedule = new DrawSchedule({
      cron: settings.drawSchedule,
      timezone: settings.drawTimezone,
      times: settings.drawTimes,
      preDrawHours: settings.preDrawHours,
      postDrawHours: settings.postDrawHours,
    });
    const cluster = settings.redisUrl
      ? await connectCluster(settings, settings.redisUrl, logger, metrics, clock)
      : undefined;
    redis = cluster;
    bus = cluster?.bus ?? new LocalBus();
    const service = new ChatService({
      settings,
      store,
      clock,
      schedule,
      bus,
      metrics,
      log: logger,
      limits: cluster?.limits,
      createPresence: cluster?.createPresence,
      userReadWindowMs: options.userReadWindowMs,
      readLagMs: options.readLagMs,
    });
    metrics.readAtScrape({ readLagMs: processReadLagMs, tickSpacing: () => service.hub.tickSpacing });
    await service.start();
    const app = await buildApp({
      settings,
      clock,
      service,
      store,
      metrics,
      verifier,
      devKeys,
      logger,
      redisStatus: cluster ? () => cluster.status() : undefined,
      heartbeatMs: options.heartbeatMs,
      readLagMs: options.readLagMs,
    });
    const ownedBus = bus;
    const ownedVerifier = verifier;
    app.addHook('onClose', async () => {
      await service.stop();
      ownedVerifier.close();
      await ownedBus.close();
      await cluster?.close();
      await store.close();
    });
    let closing: Promise<void> | undefined;
    return {
      app,
      service,
      store,
      settings,
      clock,
      async listen() {
        // A reconnect storm brings thousands of connections in a second. Node's default accept queue (511) then
        // overflows and the kernel drops handshakes, which clients retry after 1, 3, 7, 15… s: a long tail of
        // viewers without chat. The kernel caps this at net.core.somaxconn (docs/DEPLOYMENT.md).
        return app.listen({ host: settings.host, port: settings.port, backlog: LISTEN_BACKLOG });
      },
      close() {
        closing ??= app.close();
        return closing;
      },
    };
  } catch (err) {
    verifier?.close();
    await bus?.close();
    await redis?.close();
    await store.close().catch(() => {});
    throw err;
  }
}

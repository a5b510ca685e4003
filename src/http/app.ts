import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import fastifyCors from '@fastify/cors';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { ChatService } from '../chat/chat-service.js';
import type { Settings } from '../config/settings.js';
import type { Clock } from '../domain/clock.js';
import { everyMs } from '../observability/every.js';
import type { Metrics } from '../observability/metrics.js';
import { CloseCode } from '../protocol/close-codes.js';
import { ChatError, type ErrorCode } from '../protocol/errors.js';
import { PROTOCOL_VERSION } from '../protocol/messages.js';
import type { ChatStore } from '../store/types.js';
import type { DevKeys } from './auth/dev-auth.js';
import type { TokenVerifier } from './auth/verifier.js';
import { Authenticator } from './authenticate.js';
import { clientErrorHandler, errorHandler, sendError } from './errors.js';
import { WEBSOCKET_DOC } from './openapi.js';
import { redactUrl } from './redact.js';
import { adminRoutes } from './routes/admin.js';
import { chatRoutes } from './routes/chat.js';
import { devRoutes } from './routes/dev.js';
import { opsRoutes } from './routes/ops.js';
import { pageRoutes } from './routes/page.js';
import { onSocketError, WS_PATH, wsRoutes } from './ws.js';

export interface AppDeps {
  settings: Settings;
  clock: Clock;
  service: ChatService;
  store: ChatStore;
  metrics: Metrics;
  verifier: TokenVerifier;
  devKeys: DevKeys | undefined;
  logger: FastifyServerOptions['loggerInstance'];
  /** With REDIS_URL: whether Redis answers (for /readyz). */
  redisStatus?: () => 'ok' | 'unreachable';
  /** WebSocket heartbeat period, ms (default 30 s; tests shorten it). */
  heartbeatMs?: number;
  /** Slack of the per-socket frame and ping budgets (default: this process's read lag; tests pin it). */
  readLagMs?: () => number;
}

/** How often Node looks for HTTP requests over their header or request timeout (its default is 30 s). */
const TIMEOUT_CHECK_MS = 2_000;
/** An upgrade request must have become a WebSocket this long after its headers arrived, or its socket goes. */
const UPGRADE_DEADLINE_MS = 10_000;

/** The Fastify application: routes, auth, OpenAPI, WebSocket. Wiring of its dependencies is in src/server.ts. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { settings, service, metrics } = deps;
  let draining = false;
  const countError = (code: ErrorCode) => metrics.errors.inc({ code });
  const onError = errorHandler(countError);

  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: settings.maxFrameBytes,
    trustProxy: settings.trustProxy.length > 0 ? [...settings.trustProxy] : false,
    // One debug line per request (onResponse below) instead of two info lines; URLs there are redacted.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 300 },
    // What Fastify answers before any route is found (a bad percent-encoding, a path parameter over
    // maxParamLength) gets the same coded body as everything else (SPEC §4), not Fastify's own.
    frameworkErrors: (err, request, reply) => void onError(err, request, reply),
    // And what Node's parser refuses before that (headers over 16 KiB, a malformed request, a slowloris timeout).
    clientErrorHandler: clientErrorHandler(countError),
    // While draining, requests get a coded 503 from the hook below instead of Fastify's own body.
    return503OnClosing: false,
    // Slowloris (issue 6): Node checks the timeouts below only every `connectionsCheckingInterval`, 30 s by
    // default, so a 10 s header timeout could take 40 s to bite. Upgraded WebSockets are not affected.
    http: { connectionsCheckingInterval: TIMEOUT_CHECK_MS },
  }) as unknown as FastifyInstance;

  // Bodies are optional where schemas say so (a bare `POST /live-chat/like`), even with a JSON content type.
  // Prototype-poisoning keys (`__proto__`, `constructor.prototype`) are refused with 400.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  // JSON is UTF-8 (RFC 8259), whatever a charset parameter says; bytes that are not are refused (400), not stored
  // with U+FFFD in their place. A BOM is dropped.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      return done(new ChatError('bad_request', 'The body is not valid UTF-8.'), undefined);
    }
    if (text.trim() === '') return done(null, undefined);
    parseJson(request, text, done);
  });
  // Hearts over HTTP, status polls: a long poll phase of requests runs what has fallen due between them
  // (LoopGuard), before Fastify's own listener sees the request.
  app.server.prependListener('request', () => service.loop.poke());
  // Bodies are JSON only: without this, Fastify's built-in text/plain parser hands a string to the JSON schemas
  // (a confusing 400) where every other non-JSON type gets 415 `unsupported_media_type`.
  app.removeContentTypeParser('text/plain');
  // Slow clients (slowloris): headers must arrive within 10 s, a whole request within 30 s.
  app.server.headersTimeout = 10_000;
  app.server.requestTimeout = 30_000;
  // JSON is never to be sniffed as HTML, whatever a message says (hostile text stays text).
  app.addHook('onSend', async (_request, reply) => {
    if (!reply.hasHeader('x-content-type-options')) reply.header('x-content-type-options', 'nosniff');
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(onError);
  // A body in a content coding (gzip…) is not decoded here: refused (RFC 9110: 415) rather than read as it is.
  app.addHook('onRequest', (request, _reply, done) => {
    const coding = request.headers['content-encoding'];
    if (coding === undefined || coding.trim().toLowerCase() === 'identity') return done();
    done(
      new ChatError(
        'unsupported_media_type',
        `Content-Encoding ${coding} is not supported; send plain JSON.`,
      ),
    );
  });
  app.addHook('onRequest', (request, reply, done) => {
    if (!draining || request.routeOptions.url === '/readyz') return done();
    reply.header('connection', 'close');
    metrics.errors.inc({ code: 'not_ready' });
    void sendError(reply, 'not_ready', 'The server is shutting down; retry on another node.');
  });
  app.setNotFoundHandler((request, reply) => {
    metrics.errors.inc({ code: 'not_found' });
    return sendError(
      reply,
      'not_found',
      `No route ${request.method} ${redactUrl(request.url).split('?')[0]}.`,
    );
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug(
      {
        method: request.method,
        url: redactUrl(request.url),
        status: reply.statusCode,
        ms: reply.elapsedTime,
      },
      'request',
    );
    // An upgrade request answered with plain HTTP (404, 429…) has no HTTP parser left behind it: nothing else
    // would ever end its connection (see the upgrade deadline below).
    if (request.raw.headers.upgrade !== undefined && !request.raw.socket.destroyed) request.raw.socket.end();
  });

  await app.register(fastifyCors, {
    origin: settings.corsOrigins.length > 0 ? [...settings.corsOrigins] : false,
    methods: ['GET', 'POST', 'PUT', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'x-admin-key'],
    exposedHeaders: ['retry-after', 'idempotent-replayed'],
    maxAge: 600,
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'draw-chat',
        version: `protocol ${PROTOCOL_VERSION}`,
        description:
          'Live chat for prize draws: one chat window per scheduled draw. Every `/live-chat` endpoint needs ' +
          '`Authorization: Bearer <jwt>` (or `X-Admin-Key` where noted). Errors are ' +
          '`{ "error": { "code", "message" } }`.\n' +
          WEBSOCKET_DOC,
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          adminKey: { type: 'apiKey', in: 'header', name: 'X-Admin-Key' },
        },
      },
    },
    // @fastify/websocket hides WebSocket routes from OpenAPI; ours is part of the API, so it is shown.
    transform: (input) => {
      if (input.url === WS_PATH && input.schema) {
        const { hide: _hidden, ...schema } = input.schema as Record<string, unknown>;
        return jsonSchemaTransform({ ...input, schema });
      }
      return jsonSchemaTransform(input);
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  /** Sockets of upgrade requests not (yet) upgraded, with their deadline timers and close listeners (below). */
  const pendingUpgrades = new Map<Duplex, { timer: NodeJS.Timeout; onClose: () => void }>();
  // `closeTimeout` is a ws 8.23 server option that @types/ws does not list yet, hence the variable (no excess
  // property check) instead of an inline literal.
  const wsServerOptions = {
    maxPayload: settings.maxFrameBytes,
    // A message may come in pieces, but not in thousands of them (empty continuation frames cost no payload).
    // Needs ws >= 8.23 (package.json pins ^8.23.0; test/hardening/frames.test.ts checks the installed one).
    maxFragments: 64,
    // Received chunks waiting to become a frame, per socket (ws' default is 262 144): a peer dribbling a
    // 16 KiB frame one byte per TCP segment is closed (1008) instead of parking thousands of tiny buffers.
    maxBufferedChunks: 4096,
    // A closing peer that never answers the close frame is dropped after this (ws' default is 30 s).
    closeTimeout: 5_000,
    perMessageDeflate: false,
    clientTracking: true,
  };
  await app.register(fastifyWebsocket, {
    options: wsServerOptions,
    // Until our route handler takes the socket over (src/http/ws.ts `releaseUpgradeRequest`).
    errorHandler: (error, socket, request) => onSocketError(socket, error, request.log),
    preClose: async function (this: FastifyInstance) {
      draining = true;
      for (const socket of pendingUpgrades.keys()) socket.destroy();
      service.hub.closeAll(CloseCode.GOING_AWAY, 'server shutting down');
      for (const ws of this.websocketServer.clients) ws.close(CloseCode.GOING_AWAY, 'server shutting down');
      await new Promise<void>((resolve) => this.websocketServer.close(() => resolve()));
    },
  });
  // An upgrade request to a route that is not the chat socket (/healthz, /live-chat/status…): @fastify/websocket
  // (whose hook, registered just above, sets `request.ws`) would upgrade it and close it without a code, outside
  // the per-address handshake cap. It is answered as a wrong path is, with a coded 404, and its connection ends
  // with the response (onResponse).
  app.addHook('onRequest', (request, _reply, done) => {
    const route = request.routeOptions.url;
    if (!request.ws || route === undefined || route === WS_PATH) return done();
    done(new ChatError('not_found', `No WebSocket at ${redactUrl(request.url).split('?')[0]}.`));
  });

  // An upgrade request answered with a plain HTTP response (404, 414, 429…) leaves its socket outside Node's
  // HTTP bookkeeping: no keep-alive or request timeout applies any more, and `server.close()` waits for it
  // forever. Found by the hardening suite (issue 6, H-AUTH-14/H-FRAME-10): such sockets get
  // UPGRADE_DEADLINE_MS to become a WebSocket, and are destroyed when the server shuts down.
  const watchUpgrade = (socket: Duplex) => {
    const timer = setTimeout(() => socket.destroy(), UPGRADE_DEADLINE_MS);
    timer.unref();
    const onClose = () => {
      clearTimeout(timer);
      pendingUpgrades.delete(socket);
    };
    pendingUpgrades.set(socket, { timer, onClose });
    socket.once('close', onClose);
  };
  // Upgraded: the deadline and its close listener go, or every open socket would keep both (and the cleared
  // timer) for as long as it stays open.
  app.websocketServer.on('connection', (_ws, request: IncomingMessage) => {
    const pending = pendingUpgrades.get(request.socket);
    if (!pending) return;
    clearTimeout(pending.timer);
    request.socket.removeListener('close', pending.onClose);
    pendingUpgrades.delete(request.socket);
  });

  const keysWarning = everyMs(10_000);
  const auth = new Authenticator(deps.verifier, service, settings.adminApiKey, (result, reason) => {
    metrics.tokenVerifications.inc({ result });
    if (result === 'unavailable') {
      // Every request says it during a JWKS outage: one line per 10 s.
      if (keysWarning()) app.log.warn({ reason }, 'tokens not checked: signing keys unavailable');
      return;
    }
    // Why a token was refused, never the token itself: the first thing to look at when users get 401/4401.
    if (reason) app.log.info({ reason }, 'token refused');
  });

  opsRoutes(app, { store: deps.store, metrics, draining: () => draining, redisStatus: deps.redisStatus });
  chatRoutes(app, service, auth);
  adminRoutes(app, service, auth);
  if (deps.devKeys) devRoutes(app, deps.devKeys, deps.clock, settings.authHostRole);
  const acceptUpgrade = wsRoutes(app, {
    service,
    auth,
    settings,
    metrics,
    clock: deps.clock,
    log: app.log,
    heartbeatMs: deps.heartbeatMs,
    readLagMs: deps.readLagMs,
  });
  // Upgrade requests: a chat socket's is taken at once by the fast path (src/http/ws.ts `acceptUpgrade`: it is
  // a WebSocket or refused by `ws` before this returns); any other (a wrong path, a refusal to answer, the
  // server draining) goes to @fastify/websocket's listener, which routes it through Fastify, under the upgrade
  // deadline above.
  const routed = app.server.listeners('upgrade');
  if (routed.length !== 1) throw new Error(`expected one upgrade listener, found ${routed.length}`);
  const routeUpgrade = routed[0] as (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
  app.server.removeListener('upgrade', routeUpgrade);
  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!draining && acceptUpgrade(app.websocketServer, request, socket, head)) return;
    watchUpgrade(socket);
    routeUpgrade.call(app.server, request, socket, head);
  });
  await pageRoutes(app, { devAuth: settings.devAuth });

  return app;
}

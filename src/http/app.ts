import fastifyCors from '@fastify/cors';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { ChatService } from '../chat/chat-service.js';
import type { Settings } from '../config/settings.js';
import type { Clock } from '../domain/clock.js';
import type { Metrics } from '../observability/metrics.js';
import { CloseCode } from '../protocol/close-codes.js';
import { PROTOCOL_VERSION } from '../protocol/messages.js';
import type { ChatStore } from '../store/types.js';
import type { DevKeys } from './auth/dev-auth.js';
import type { TokenVerifier } from './auth/verifier.js';
import { Authenticator } from './authenticate.js';
import { errorHandler, sendError } from './errors.js';
import { WEBSOCKET_DOC } from './openapi.js';
import { redactUrl } from './redact.js';
import { adminRoutes } from './routes/admin.js';
import { chatRoutes } from './routes/chat.js';
import { devRoutes } from './routes/dev.js';
import { opsRoutes } from './routes/ops.js';
import { pageRoutes } from './routes/page.js';
import { WS_PATH, wsRoutes } from './ws.js';

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
}

/** The Fastify application: routes, auth, OpenAPI, WebSocket. Wiring of its dependencies is in src/server.ts. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { settings, service, metrics } = deps;
  let draining = false;

  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: settings.maxFrameBytes,
    trustProxy: settings.trustProxy.length > 0 ? [...settings.trustProxy] : false,
    // One debug line per request (onResponse below) instead of two info lines; URLs there are redacted.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 300 },
    return503OnClosing: true,
  }) as unknown as FastifyInstance;

  // Bodies are optional where schemas say so (a bare `POST /live-chat/like`), even with a JSON content type.
  // Prototype-poisoning keys (`__proto__`, `constructor.prototype`) are refused with 400.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString();
    if (text.trim() === '') return done(null, undefined);
    parseJson(request, text, done);
  });
  // Bodies are JSON only: without this, Fastify's built-in text/plain parser hands a string to the JSON schemas
  // (a confusing 400) where every other non-JSON type gets 415 `unsupported_media_type`.
  app.removeContentTypeParser('text/plain');
  // Slow clients (slowloris): headers must arrive within 10 s, a whole request within 30 s.
  app.server.headersTimeout = 10_000;
  app.server.requestTimeout = 30_000;
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler((code) => metrics.errors.inc({ code })));
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

  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: settings.maxFrameBytes,
      // A message may come in pieces, but not in thousands of them (empty continuation frames cost no payload).
      maxFragments: 64,
      perMessageDeflate: false,
      clientTracking: true,
    },
    errorHandler: (error, socket, request) => {
      // Peers that vanish mid-frame are routine; anything else is worth a line.
      request.log.debug({ err: error }, 'websocket error');
      // After a protocol error (1009 too large, 1007 bad UTF-8) `ws` is already sending its close frame:
      // let it finish (it destroys the socket itself after its close timeout) so the peer sees the code.
      if (socket.readyState !== socket.CLOSING) socket.terminate();
    },
    preClose: async function (this: FastifyInstance) {
      draining = true;
      service.hub.closeAll(CloseCode.GOING_AWAY, 'server shutting down');
      for (const ws of this.websocketServer.clients) ws.close(CloseCode.GOING_AWAY, 'server shutting down');
      await new Promise<void>((resolve) => this.websocketServer.close(() => resolve()));
    },
  });

  const auth = new Authenticator(deps.verifier, service, settings.adminApiKey, (result, reason) => {
    metrics.tokenVerifications.inc({ result });
    // Why a token was refused, never the token itself: the first thing to look at when users get 401/4401.
    if (reason) app.log.info({ reason }, 'token refused');
  });

  opsRoutes(app, { store: deps.store, metrics, draining: () => draining, redisStatus: deps.redisStatus });
  chatRoutes(app, service, auth);
  adminRoutes(app, service, auth);
  if (deps.devKeys) devRoutes(app, deps.devKeys, deps.clock);
  wsRoutes(app, { service, auth, settings, metrics, clock: deps.clock, log: app.log });
  await pageRoutes(app, { devAuth: settings.devAuth });

  return app;
}
